//! `chorus task build`: a task project to a reproducible `wasm32-wasip1` module.
//!
//! The same routes and flags as `examples/build.sh`:
//!
//! - Rust: rustup's `wasm32-wasip1` target when it is installed, else Debian's
//!   `rustc-web` building `std` itself (`-Zbuild-std`, linked by `wasm-ld`
//!   against wasi-libc). `CHORUS_WASM_TOOLCHAIN=rustup|debian` forces a route.
//! - C: clang `--target=wasm32-wasi` with wasi-libc and compiler-rt.
//!
//! Reproducible: every absolute path that could land in the module is
//! remapped (the project to `/task`, a path dependency's repository such as
//! the guest SDK's to `/chorus`, `CARGO_HOME` to `/cargo`, the standard
//! library's source to `/rustc`), cargo runs with a clean environment, one
//! codegen unit, symbols stripped. Two copies of a project in two directories
//! give the same bytes. What still matters is the compiler and, for Rust, the
//! absolute path of a path dependency outside the project (cargo hashes it
//! into every symbol name): the same SDK clone gives the same bytes.
//!
//! A missing piece of toolchain is one [`BuildError::Missing`], naming the
//! piece and the command that installs it. `CHORUS_WASM_PREFIX` (default
//! `/usr`) is where Debian's pieces are looked for: `bin/rustc`, `bin/cargo`,
//! `lib/rustlib/src/rust/library`, `lib/wasm32-wasi`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::SystemTime;

use super::Lang;

/// What installs Debian's Rust route (`-Zbuild-std` with rustc-web).
pub const RUST_APT: &str = "apt-get install -y rustc-web cargo-web rust-web-src lld wasi-libc";
/// What installs rustup's Rust route.
pub const RUSTUP_TARGET: &str = "rustup target add wasm32-wasip1";
/// What installs the C route.
pub const C_APT: &str = "apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32";
/// clang's flags for a C task, besides `-ffile-prefix-map`, the output, the
/// sources and `-lm` (the C template's Makefile has the same).
pub const C_FLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-O2",
    "-msimd128",
    "-Wl,--strip-all",
];
/// The file in a project's `target/` that names its last built module.
const RECORD: &str = "target/.chorus-module";

/// Which Rust toolchain builds for `wasm32-wasip1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// rustup's `wasm32-wasip1` target.
    Rustup,
    /// Debian's rustc-web with `-Zbuild-std`.
    Debian,
}

/// Where a build looks for its tools: the parts of the environment it reads.
/// [`BuildEnv::from_process`] takes them from this process.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// `PATH`: rustup, cargo, rustc, clang, wasm-ld.
    pub path: OsString,
    /// `HOME`, passed on to cargo and rustup.
    pub home: Option<OsString>,
    /// `CARGO_HOME` (default `$HOME/.cargo`): remapped out of the module.
    pub cargo_home: PathBuf,
    /// `RUSTUP_HOME` and `RUSTUP_TOOLCHAIN` when set, passed on.
    pub rustup_vars: Vec<(String, OsString)>,
    /// `CHORUS_WASM_PREFIX` (default `/usr`): where Debian's rustc-web,
    /// cargo-web, rust-web-src and wasi-libc are.
    pub prefix: PathBuf,
    /// `CHORUS_WASM_TOOLCHAIN=rustup|debian`: a forced Rust route.
    pub route: Option<Route>,
}

impl BuildEnv {
    /// The build environment of this process.
    pub fn from_process() -> Result<BuildEnv, BuildError> {
        let home = std::env::var_os("HOME");
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| Path::new(h).join(".cargo")))
            .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
        let route = match std::env::var("CHORUS_WASM_TOOLCHAIN").ok().as_deref() {
            None | Some("") => None,
            Some("rustup") => Some(Route::Rustup),
            Some("debian") => Some(Route::Debian),
            Some(other) => return Err(BuildError::BadRoute(other.to_string())),
        };
        Ok(BuildEnv {
            path: std::env::var_os("PATH").unwrap_or_default(),
            home,
            cargo_home,
            rustup_vars: ["RUSTUP_HOME", "RUSTUP_TOOLCHAIN"]
                .into_iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v)))
                .collect(),
            prefix: std::env::var_os("CHORUS_WASM_PREFIX")
                .filter(|p| !p.is_empty())
                .map_or_else(|| PathBuf::from("/usr"), PathBuf::from),
            route,
        })
    }

    /// `name` found on [`path`](Self::path), as `which` does.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        std::env::split_paths(&self.path)
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    }

    /// A command with a clean environment: only `PATH`, `HOME`, `CARGO_HOME`,
    /// rustup's variables and the locale pass (a `RUSTFLAGS`,
    /// `CARGO_INCREMENTAL` or `CARGO_PROFILE_*` of the caller would change
    /// the bytes).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", &self.path)
            .env("CARGO_HOME", &self.cargo_home)
            .env("CARGO_INCREMENTAL", "0")
            .env("LC_ALL", "C")
            .env("SOURCE_DATE_EPOCH", "0")
            .envs(self.rustup_vars.iter().map(|(k, v)| (k, v)));
        if let Some(home) = &self.home {
            cmd.env("HOME", home);
        }
        cmd
    }
}

/// A built module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Its path.
    pub module: PathBuf,
    /// SHA-256 of its bytes, in hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// Why there is no module. Nothing but the project's `target/` was changed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The directory holds neither a Cargo.toml nor C sources.
    #[error(
        "{0} is not a task project: no Cargo.toml, no src/*.c (`chorus task new DIR` writes one)"
    )]
    NotAProject(PathBuf),
    /// A piece of the toolchain is missing.
    #[error("cannot build the {lang} task: {piece} is missing; install it with `{}`", install.join("` or `"))]
    Missing {
        /// The project's language.
        lang: Lang,
        /// What is missing, and where it was looked for.
        piece: String,
        /// Commands that install it (alternatives).
        install: Vec<&'static str>,
    },
    /// `CHORUS_WASM_TOOLCHAIN` holds something else than `rustup` or `debian`.
    #[error("CHORUS_WASM_TOOLCHAIN={0}: expected `rustup` or `debian`")]
    BadRoute(String),
    /// A tool could not be started.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// The tool.
        tool: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The compiler failed; its own messages went to stderr.
    #[error("{tool} failed ({status}); its messages are above")]
    Failed {
        /// The tool.
        tool: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// Cargo built no binary, or several (a task is one `wasm32-wasip1` binary).
    #[error("cargo built {0} wasm binaries in {1}; a task project has exactly one")]
    Binaries(usize, PathBuf),
    /// A Python project: its script is what the grid runs.
    #[error("{} needs no build: submit it with `chorus submit --python {}`", .0.display(), .0.display())]
    NothingToBuild(PathBuf),
    /// Cargo.toml does not parse.
    #[error("{path}: {reason}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A path that goes into the compiler's flags is not UTF-8.
    #[error("{0} is not valid UTF-8, so it cannot be remapped out of the module")]
    NotUtf8(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The language of the project in `dir`, if it is one.
pub fn lang_of(dir: &Path) -> Option<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Some(Lang::Rust)
    } else if !c_sources(dir).unwrap_or_default().is_empty() {
        Some(Lang::C)
    } else if dir.join("main.py").is_file() {
        Some(Lang::Python)
    } else {
        None
    }
}

/// Builds the project in `dir`; the compiler's messages go to stderr.
pub fn build(dir: &Path, env: &BuildEnv) -> Result<Built, BuildError> {
    let dir = dir.canonicalize().map_err(|source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let lang = lang_of(&dir).ok_or_else(|| BuildError::NotAProject(dir.clone()))?;
    let module = match lang {
        Lang::Rust => build_rust(&dir, env)?,
        Lang::C => build_c(&dir, env)?,
        Lang::Python => return Err(BuildError::NothingToBuild(dir.join("main.py"))),
    };
    let rel = module.strip_prefix(&dir).unwrap_or(&module);
    let record = dir.join(RECORD);
    std::fs::write(&record, format!("{}\n", rel.display())).map_err(|source| BuildError::Io {
        path: record,
        source,
    })?;
    describe(&module)
}

/// The project's module, built first when it is missing or older than a
/// source (`src/`, `Cargo.toml`, `Cargo.lock`, `Makefile`). The flag says
/// whether it was built.
pub fn ensure_built(dir: &Path, env: &BuildEnv) -> Result<(Built, bool), BuildError> {
    match fresh_module(dir) {
        Some(module) => Ok((describe(&module)?, false)),
        None => Ok((build(dir, env)?, true)),
    }
}

/// The module of the last build when it is newer than every source.
pub fn fresh_module(dir: &Path) -> Option<PathBuf> {
    let rel = std::fs::read_to_string(dir.join(RECORD)).ok()?;
    let module = dir.join(rel.trim_end_matches('\n'));
    let built = std::fs::metadata(&module).ok()?.modified().ok()?;
    let newest = newest_source(dir)?;
    (built >= newest).then_some(module)
}

/// Hash and size of a module.
fn describe(module: &Path) -> Result<Built, BuildError> {
    let bytes = std::fs::read(module).map_err(|source| BuildError::Io {
        path: module.to_path_buf(),
        source,
    })?;
    Ok(Built {
        module: module.to_path_buf(),
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)),
        bytes: bytes.len() as u64,
    })
}

/// The latest modification time of the project's sources (`None` if one
/// cannot be read: then the module is rebuilt).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for f in ["Cargo.toml", "Cargo.lock", "Makefile", "build.rs"] {
        if let Ok(m) = std::fs::metadata(dir.join(f)) {
            newest = newest.max(m.modified().ok()?);
        }
    }
    // Bounded walk of src/: no project has more files than this.
    let mut stack = vec![dir.join("src")];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            seen += 1;
            if seen > 100_000 {
                return None;
            }
            let entry = entry.ok()?;
            let meta = entry.metadata().ok()?;
            newest = newest.max(meta.modified().ok()?);
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Some(newest)
}

// --- Rust ------------------------------------------------------------------

/// A Rust toolchain that builds for `wasm32-wasip1`.
enum RustToolchain {
    /// rustup's cargo, and the sysroot of its rustc.
    Rustup { cargo: PathBuf, sysroot: PathBuf },
    /// Debian's rustc and cargo under the prefix, and `wasm-ld`.
    Debian {
        rustc: PathBuf,
        cargo: PathBuf,
        wasm_ld: PathBuf,
    },
}

/// The Rust toolchain to use, or the first missing piece.
fn rust_toolchain(env: &BuildEnv, dir: &Path) -> Result<RustToolchain, BuildError> {
    let missing = |piece: String, install: Vec<&'static str>| BuildError::Missing {
        lang: Lang::Rust,
        piece,
        install,
    };
    if env.route != Some(Route::Debian)
        && let Some(rustup) = env.which("rustup")
        && rustup_has_wasm_target(env, &rustup, dir)
    {
        let cargo = env.which("cargo").ok_or_else(|| {
            missing(
                "cargo (rustup's, on PATH)".into(),
                vec!["rustup component add cargo"],
            )
        })?;
        let rustc = env.which("rustc").ok_or_else(|| {
            missing(
                "rustc (rustup's, on PATH)".into(),
                vec!["rustup component add rustc"],
            )
        })?;
        let out = env
            .command(&rustc)
            .current_dir(dir)
            .arg("--print")
            .arg("sysroot")
            .stderr(Stdio::inherit())
            .output()
            .map_err(|source| BuildError::Spawn {
                tool: rustc.clone(),
                source,
            })?;
        let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
        tracing::info!(%sysroot, "Rust route: rustup's wasm32-wasip1 target");
        return Ok(RustToolchain::Rustup {
            cargo,
            sysroot: PathBuf::from(sysroot),
        });
    }
    if env.route == Some(Route::Rustup) {
        return Err(missing(
            "rustup's wasm32-wasip1 target (CHORUS_WASM_TOOLCHAIN=rustup)".into(),
            vec![RUSTUP_TARGET],
        ));
    }
    let both = vec![RUST_APT, RUSTUP_TARGET];
    let p = &env.prefix;
    let rustc = p.join("bin/rustc");
    let cargo = p.join("bin/cargo");
    let src = p.join("lib/rustlib/src/rust/library");
    let crt1 = p.join("lib/wasm32-wasi/crt1-command.o");
    if !is_executable(&rustc) {
        return Err(missing(
            format!(
                "a wasm32-wasip1 Rust toolchain (rustup has no wasm32-wasip1 target, and Debian's rustc-web is not at {})",
                rustc.display()
            ),
            both,
        ));
    }
    if !is_executable(&cargo) {
        return Err(missing(
            format!("Debian's cargo-web ({})", cargo.display()),
            both,
        ));
    }
    if !src.is_dir() {
        return Err(missing(
            format!("Debian's rust-web-src ({})", src.display()),
            both,
        ));
    }
    let Some(wasm_ld) = env.which("wasm-ld") else {
        return Err(missing("lld (wasm-ld on PATH)".into(), both));
    };
    if !crt1.is_file() {
        return Err(missing(format!("wasi-libc ({})", crt1.display()), both));
    }
    tracing::info!(rustc = %rustc.display(), "Rust route: Debian's rustc-web with -Zbuild-std");
    Ok(RustToolchain::Debian {
        rustc,
        cargo,
        wasm_ld,
    })
}

/// Whether `rustup target list --installed` holds `wasm32-wasip1`.
fn rustup_has_wasm_target(env: &BuildEnv, rustup: &Path, dir: &Path) -> bool {
    env.command(rustup)
        .current_dir(dir)
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == "wasm32-wasip1")
        })
}

/// `cargo build --release --target wasm32-wasip1` of the project in `dir`
/// (canonical); returns the module's path.
fn build_rust(dir: &Path, env: &BuildEnv) -> Result<PathBuf, BuildError> {
    let toolchain = rust_toolchain(env, dir)?;
    let utf8 = |p: &Path| -> Result<String, BuildError> {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| BuildError::NotUtf8(p.to_path_buf()))
    };
    // rustc lets the last matching --remap-path-prefix win: the most
    // specific (the project itself) comes last.
    let mut flags = vec![
        "-C".to_string(),
        "target-feature=+simd128".to_string(),
        format!("--remap-path-prefix={}=/cargo", utf8(&env.cargo_home)?),
    ];
    let (cargo, mut cmd_args, extra_env) = match &toolchain {
        RustToolchain::Rustup { cargo, sysroot } => {
            flags.push(format!("--remap-path-prefix={}=/rustc", utf8(sysroot)?));
            (cargo.clone(), vec![], vec![])
        }
        RustToolchain::Debian {
            rustc,
            cargo,
            wasm_ld,
        } => {
            let libc = env.prefix.join("lib/wasm32-wasi");
            flags.extend([
                format!(
                    "--remap-path-prefix={}=/rustc/src",
                    utf8(&env.prefix.join("lib/rustlib/src/rust"))?
                ),
                "-C".into(),
                "link-self-contained=no".into(),
                "-L".into(),
                utf8(&libc)?,
                "-C".into(),
                format!("link-arg={}", utf8(&libc.join("crt1-command.o"))?),
            ]);
            (
                cargo.clone(),
                vec!["-Zbuild-std=std,panic_abort".to_string()],
                vec![
                    ("RUSTC", rustc.clone().into_os_string()),
                    ("RUSTC_BOOTSTRAP", OsString::from("1")),
                    (
                        "CARGO_TARGET_WASM32_WASIP1_LINKER",
                        wasm_ld.clone().into_os_string(),
                    ),
                ],
            )
        }
    };
    for (from, to) in path_dependency_remaps(dir)? {
        flags.push(format!("--remap-path-prefix={}={to}", utf8(&from)?));
    }
    flags.push(format!("--remap-path-prefix={}=/task", utf8(dir)?));
    cmd_args.extend(
        [
            "--release",
            "--target",
            "wasm32-wasip1",
            "--message-format=json-render-diagnostics",
        ]
        .map(String::from),
    );
    let mut cmd = env.command(&cargo);
    cmd.current_dir(dir)
        .arg("build")
        .args(&cmd_args)
        .envs(extra_env)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    tracing::debug!(?cmd, "building a Rust task");
    let out = cmd.output().map_err(|source| BuildError::Spawn {
        tool: cargo.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(BuildError::Failed {
            tool: format!("{} build", cargo.display()),
            status: out.status,
        });
    }
    // One JSON message per line; the binaries are the artifacts with an
    // `executable`.
    let modules: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .filter(|p| p.extension() == Some(OsStr::new("wasm")))
        .collect();
    match modules.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(BuildError::Binaries(modules.len(), dir.to_path_buf())),
    }
}

/// Remaps for the path dependencies of `dir/Cargo.toml`: the repository a
/// dependency lies in (its parent, as the guest SDK's `task-sdk/` lies in a
/// Chorus clone) becomes `/chorus` for the SDK and `/deps/NAME` otherwise.
fn path_dependency_remaps(dir: &Path) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| BuildError::Manifest {
                path: path.clone(),
                reason: e.message().to_string(),
            })?;
    let mut remaps = Vec::new();
    let Some(deps) = manifest.get("dependencies").and_then(|d| d.as_table()) else {
        return Ok(remaps);
    };
    for (name, dep) in deps {
        let Some(p) = dep.get("path").and_then(|p| p.as_str()) else {
            continue;
        };
        let Ok(abs) = dir.join(p).canonicalize() else {
            continue; // cargo says why
        };
        if name == "chorus-sdk" {
            if let Some(repo) = abs.parent() {
                remaps.push((repo.to_path_buf(), "/chorus".to_string()));
            }
        } else {
            remaps.push((abs, format!("/deps/{name}")));
        }
    }
    Ok(remaps)
}

// --- C -----------------------------------------------------------------------

/// clang on the project's `src/*.c`; returns the module's path.
fn build_c(dir: &Path, env: &BuildEnv) -> Result<PathBuf, BuildError> {
    let missing = |piece: &str| BuildError::Missing {
        lang: Lang::C,
        piece: piece.to_string(),
        install: vec![C_APT],
    };
    let clang = env
        .which("clang")
        .ok_or_else(|| missing("clang (on PATH)"))?;
    if env.which("wasm-ld").is_none() {
        return Err(missing("lld (wasm-ld on PATH)"));
    }
    let ask = |arg: &str| -> Result<PathBuf, BuildError> {
        let out = env
            .command(&clang)
            .args(["--target=wasm32-wasi", arg])
            .stderr(Stdio::null())
            .output()
            .map_err(|source| BuildError::Spawn {
                tool: clang.clone(),
                source,
            })?;
        Ok(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    };
    // clang answers a bare file name when it finds no such file.
    if !ask("-print-file-name=libc.a")?.is_absolute() {
        return Err(missing("wasi-libc (clang finds no wasm32-wasi libc.a)"));
    }
    let rt = ask("-print-libgcc-file-name")?;
    if !rt.is_file() {
        return Err(missing(&format!(
            "compiler-rt for wasm32 ({}, package libclang-rt-14-dev-wasm32)",
            rt.display()
        )));
    }
    let sources = c_sources(dir).map_err(|source| BuildError::Io {
        path: dir.join("src"),
        source,
    })?;
    let name = c_name(dir);
    let target = dir.join("target");
    std::fs::create_dir_all(&target).map_err(|source| BuildError::Io {
        path: target.clone(),
        source,
    })?;
    let module = target.join(format!("{name}.wasm"));
    let prefix_map = format!(
        "-ffile-prefix-map={}=/task",
        dir.to_str()
            .ok_or_else(|| BuildError::NotUtf8(dir.to_path_buf()))?
    );
    let mut cmd = env.command(&clang);
    cmd.current_dir(dir)
        .args(C_FLAGS)
        .arg(prefix_map)
        .arg("-o")
        .arg(Path::new("target").join(format!("{name}.wasm")))
        .args(&sources)
        .arg("-lm")
        .stdin(Stdio::null())
        // The compiler's output goes to stderr: stdout is the module's path.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    tracing::debug!(?cmd, "building a C task");
    let status = cmd.status().map_err(|source| BuildError::Spawn {
        tool: clang.clone(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::Failed {
            tool: clang.display().to_string(),
            status,
        });
    }
    Ok(module)
}

/// `src/*.c` relative to `dir`, sorted.
fn c_sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir.join("src"))?
        .filter_map(Result::ok)
        .map(|e| Path::new("src").join(e.file_name()))
        .filter(|p| p.extension() == Some(OsStr::new("c")))
        .collect();
    sources.sort();
    Ok(sources)
}

/// The module name of a C project: `NAME = ...` in its Makefile, else the
/// directory's name.
fn c_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("Makefile"))
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                let v = v.trim();
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                (k.trim().trim_end_matches(':') == "NAME" && ok).then(|| v.to_string())
            })
        })
        .unwrap_or_else(|| super::new::package_name(dir))
}

/// Whether `p` is a file with an execute bit.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
