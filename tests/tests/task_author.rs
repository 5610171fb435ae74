//! A task author's path, as a user walks it: `chorus task new` → `task build`
//! → `task test` → `chorus submit` to a real 3-node ring → `chorus verify`,
//! for the Rust and the C template; plus the refusals (a non-empty directory,
//! a missing SDK, a missing toolchain) and the reproducibility of a build.
//!
//! These need the wasm toolchains (`.ci/run` installs them): Debian's
//! rustc-web route or rustup's `wasm32-wasip1` target, and clang with
//! wasi-libc. Without them the tests fail, naming the missing piece.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chorus_node::author::build::BuildEnv;
use chorus_node::cli::task::run_with;
use chorus_node::cli::{Cli, Command};
use chorus_tests::{TempDir, TestNode, start_cluster};
use clap::Parser;
use serde::Deserialize;

/// One 3-node ring for every test of this file (started by the first that asks).
fn ring() -> &'static [TestNode] {
    static RING: OnceLock<Vec<TestNode>> = OnceLock::new();
    RING.get_or_init(|| start_cluster(3, |_, _| {}).expect("a 3-node ring"))
}

/// `f` on a thread of its own, failing the test if it takes longer than `limit`
/// (a build or a job that hangs must not hang the suite).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: no answer within {limit:?} ({e})"))
}

/// `chorus ARGS` in this process; its exit code.
fn chorus(args: &[&str]) -> ExitCode {
    let cli = Cli::try_parse_from(std::iter::once("chorus").chain(args.iter().copied()))
        .expect("arguments parse");
    chorus_node::cli::run(cli)
}

/// `chorus task ARGS` in this process, with this process's environment:
/// what it printed on stdout, or its error as `chorus` prints it.
fn task(args: &[&str]) -> Result<String, String> {
    let env = BuildEnv::from_process().expect("build environment");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    within(
        Duration::from_secs(900),
        &format!("chorus task {args:?}"),
        move || {
            let argv = ["chorus", "task"].into_iter().map(String::from).chain(args);
            let Command::Task(a) = Cli::try_parse_from(argv).expect("parse").command else {
                panic!("not a task command");
            };
            let mut out = Vec::new();
            match run_with(a, Some(&env), &mut out) {
                Ok(code) if code == ExitCode::SUCCESS => {
                    Ok(String::from_utf8(out).expect("utf-8 stdout"))
                }
                Ok(code) => Err(format!("exit {code:?}: {}", String::from_utf8_lossy(&out))),
                Err(e) => Err(format!("error: {e:#}")),
            }
        },
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The Rust template's output for its sample input.
#[derive(Debug, PartialEq, Deserialize)]
struct Summary {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
    mean: f64,
}

/// new → build → test → submit (2 replicas) → verify, for the template `lang`;
/// `check` judges the output bytes. Returns the project directory's module.
fn new_to_verified(lang: &str, check: impl Fn(&[u8])) -> (TempDir, PathBuf) {
    let start = Instant::now();
    let tmp = TempDir::new("author", lang);
    let dir = tmp.0.join(format!("my-{lang}-task"));
    let said = task(&["new", s(&dir), "--lang", lang]).expect("task new");
    assert!(said.contains("task test"), "{said}");
    for f in ["README.md", "sample-input"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("readme");
    for step in [
        "chorus task build",
        "chorus task test",
        "chorus submit",
        "chorus verify",
    ] {
        assert!(readme.contains(step), "README says `{step}`:\n{readme}");
    }

    let printed = task(&["build", s(&dir)]).expect("task build");
    assert_eq!(printed.lines().count(), 1, "one line: {printed:?}");
    let module = PathBuf::from(printed.trim_end());
    assert!(
        module.is_file() && module.extension().is_some_and(|e| e == "wasm"),
        "{printed}"
    );
    assert!(
        module.starts_with(dir.canonicalize().expect("dir")),
        "{printed}"
    );
    let bytes = std::fs::read(&module).expect("module");
    assert!(bytes.starts_with(b"\0asm"), "a wasm module");
    eprintln!("{lang}: new + build in {:?}", start.elapsed());

    // task test: the module is fresh, so it runs as built.
    let printed = task(&["test", s(&dir)]).expect("task test");
    let json = task(&["test", s(&dir), "--json"]).expect("task test --json");
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["status"], "ok", "{json}");
    assert_eq!(json["module"], s(&module), "{json}");

    // The module on the grid: 2 replicas on distinct nodes, a proof, verify.
    let inputs = tmp.0.join("inputs");
    std::fs::create_dir_all(&inputs).expect("inputs");
    std::fs::copy(dir.join("sample-input"), inputs.join("sample-input")).expect("copy");
    let out = tmp.0.join("out");
    let node = ring()[1].addr.to_string();
    let argv: Vec<String> = [
        "submit",
        "--node",
        &node,
        s(&module),
        "--inputs",
        s(&inputs),
        "--replicas",
        "2",
        "--out",
        s(&out),
        "--json",
        "--key-dir",
        s(&tmp.0.join("key")),
    ]
    .map(String::from)
    .to_vec();
    let code = within(Duration::from_secs(300), "chorus submit", move || {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        chorus(&argv)
    });
    assert_eq!(code, ExitCode::SUCCESS, "chorus submit");
    let output = std::fs::read(out.join("sample-input")).expect("the output");
    check(&output);
    assert!(out.join("sample-input.proof").is_file(), "a proof");
    assert_eq!(
        chorus(&["verify", s(&out)]),
        ExitCode::SUCCESS,
        "chorus verify"
    );
    let report = chorus_node::cli::verify::verify_dir(&out).expect("verify");
    assert_eq!((report.ok, report.failed.len()), (1, 0), "{report:?}");
    eprintln!("{lang}: new to a verified result in {:?}", start.elapsed());

    // What task test printed is what the grid computed.
    match lang {
        "rust" => {
            let v: serde_json::Value = serde_json::from_str(&printed).expect("JSON output");
            assert_eq!(v, json["output"]);
            assert_eq!(json["output_format"], "msgpack");
            let grid: Summary = rmp_serde::from_slice(&output).expect("MessagePack output");
            assert_eq!(
                serde_json::from_value::<Summary>(v).expect("same fields"),
                grid
            );
        }
        _ => {
            assert_eq!(printed.as_bytes(), output.as_slice());
            assert_eq!(json["output_format"], "text");
        }
    }
    (tmp, dir)
}

#[test]
fn rust_template_goes_from_new_to_a_verified_result_and_builds_the_same_bytes_elsewhere() {
    let (tmp, dir) = new_to_verified("rust", |output| {
        let got: Summary = rmp_serde::from_slice(output).expect("MessagePack output");
        let want = Summary {
            count: 8,
            sum: 31,
            min: 1,
            max: 9,
            mean: 3.875,
        };
        assert_eq!(got, want);
    });

    // The same template in another directory, deeper: the same bytes, and
    // no path of either directory in them (one build of std less than a
    // test of its own would cost).
    let other = tmp.0.join("b/deeper").join(dir.file_name().expect("name"));
    task(&["new", s(&other)]).expect("task new");
    let mut built = Vec::new();
    for d in [&dir, &other] {
        let json = task(&["build", s(d), "--json"]).expect("task build");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let module = PathBuf::from(v["module"].as_str().expect("module"));
        let bytes = std::fs::read(&module).expect("module");
        assert_eq!(v["bytes"], bytes.len() as u64);
        built.push((
            module,
            v["sha256"].as_str().expect("sha256").to_string(),
            bytes,
        ));
    }
    assert_ne!(built[0].0, built[1].0, "two directories");
    assert_eq!(built[0].1, built[1].1, "same sha256");
    assert!(built[0].2 == built[1].2, "same bytes");
    let needle = tmp.0.to_str().expect("utf-8").as_bytes();
    for (module, _, bytes) in &built {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a path in {}",
            module.display()
        );
    }
}

#[test]
fn c_template_goes_from_new_to_a_verified_result_and_test_rebuilds_a_stale_module() {
    let sample =
        std::str::from_utf8(include_bytes!("../../node/templates/c/sample-input")).expect("text");
    let expected = format!(
        "{} {} {}\n",
        sample.matches('\n').count(),
        sample.split_ascii_whitespace().count(),
        sample.len()
    );
    let want = expected.clone();
    let (_tmp, dir) = new_to_verified("c", move |output| {
        assert_eq!(std::str::from_utf8(output).expect("text"), want)
    });

    // A source newer than the module: task test builds before it runs.
    let main = dir.join("src/main.c");
    let source = std::fs::read_to_string(&main).expect("source");
    let changed = source.replace(
        "\"%llu %llu %llu\\n\"",
        "\"lines=%llu words=%llu bytes=%llu\\n\"",
    );
    assert_ne!(changed, source, "the template's printf");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&main, changed).expect("edit");
    let printed = task(&["test", s(&dir)]).expect("task test");
    let mut parts = expected.split_whitespace();
    let (l, w, b) = (parts.next(), parts.next(), parts.next());
    assert_eq!(
        printed,
        format!(
            "lines={} words={} bytes={}\n",
            l.unwrap_or(""),
            w.unwrap_or(""),
            b.unwrap_or("")
        )
    );

    // A task that fails: exit 1 and one line naming the error.
    let bad = dir.join("bad-input");
    std::fs::write(&bad, b"x").expect("input");
    std::fs::write(&main, "int main(void) { return 3; }\n").expect("edit");
    let err = task(&["test", s(&dir), "--input", s(&bad)]).expect_err("a failing task");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("the task failed: exit code 3"), "{err}");
}

#[test]
fn task_new_refuses_a_non_empty_directory_and_a_missing_sdk() {
    let tmp = TempDir::new("author", "refuse");
    let full = tmp.0.join("full");
    std::fs::create_dir_all(&full).expect("dir");
    std::fs::write(full.join("notes.txt"), b"mine").expect("file");
    for lang in ["rust", "c"] {
        let err = task(&["new", s(&full), "--lang", lang]).expect_err("refused");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is not empty"), "{err}");
        assert_eq!(
            chorus(&["task", "new", s(&full), "--lang", lang]),
            ExitCode::FAILURE
        );
    }
    let left: Vec<_> = std::fs::read_dir(&full).expect("dir").collect();
    assert_eq!(left.len(), 1, "nothing written");

    let fresh = tmp.0.join("fresh");
    let err = task(&["new", s(&fresh), "--sdk", s(&tmp.0.join("no-sdk"))]).expect_err("no SDK");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--sdk"), "{err}");
    assert!(!fresh.exists(), "nothing written");
    // An explicit SDK is written into Cargo.toml as given, canonical.
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../task-sdk");
    task(&["new", s(&fresh), "--sdk", s(&sdk)]).expect("task new --sdk");
    let toml = std::fs::read_to_string(fresh.join("Cargo.toml")).expect("Cargo.toml");
    let canonical = sdk.canonicalize().expect("sdk");
    assert!(
        toml.contains(&format!("path = \"{}\"", s(&canonical))),
        "{toml}"
    );
    assert!(toml.contains("\n[workspace]\n"), "{toml}");
}

/// The name of [`child_runs_chorus`] and the variable that gives it its arguments.
const CHILD: &str = "child_runs_chorus";
const CHILD_ARGS: &str = "CHORUS_AUTHOR_TEST_CHILD_ARGS";

/// Run as a child process by [`a_missing_toolchain_is_one_line_naming_it`]:
/// `chorus` with the arguments in `CHORUS_AUTHOR_TEST_CHILD_ARGS` (unit
/// separated) and this process's environment, then exit with its code.
/// Without that variable it does nothing.
#[test]
fn child_runs_chorus() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let code = chorus(&args.split('\x1f').collect::<Vec<_>>());
    std::process::exit(if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::FAILURE {
        1
    } else {
        2
    });
}

#[test]
fn a_missing_toolchain_is_one_line_naming_it() {
    let tmp = TempDir::new("author", "missing");
    for (lang, says) in [
        (
            "rust",
            [
                "apt-get install -y rustc-web cargo-web rust-web-src lld wasi-libc",
                "rustup target add wasm32-wasip1",
            ],
        ),
        (
            "c",
            [
                "clang",
                "apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32",
            ],
        ),
    ] {
        let dir = tmp.0.join(lang);
        task(&["new", s(&dir), "--lang", lang]).expect("task new");
        // A machine without the tools: nothing on PATH (no rustup, clang or
        // wasm-ld), and Debian's rustc-web looked for under a prefix that
        // does not exist (CHORUS_WASM_PREFIX, see `chorus task build`).
        let child = Process::new(std::env::current_exe().expect("this test binary"))
            .args([CHILD, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ARGS, ["task", "build", s(&dir)].join("\x1f"))
            .env("PATH", "")
            .env("CHORUS_WASM_PREFIX", tmp.0.join("no-prefix"))
            .env_remove("CHORUS_WASM_TOOLCHAIN")
            .env_remove("RUST_LOG")
            .output()
            .expect("child");
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert_eq!(child.status.code(), Some(1), "{lang}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{lang}: one line: {stderr}");
        assert!(
            stderr.starts_with("error: cannot build the "),
            "{lang}: {stderr}"
        );
        for s in says {
            assert!(stderr.contains(s), "{lang}: names `{s}`: {stderr}");
        }
        assert!(
            !dir.join("target/.chorus-module").exists(),
            "{lang}: nothing built"
        );
    }
}

#[test]
fn task_new_writes_a_python_task_that_needs_no_build() {
    let tmp = TempDir::new("author", "python");
    let dir = tmp.0.join("stats");
    let said = task(&["new", s(&dir), "--lang", "python"]).expect("task new");
    assert!(said.contains("python task stats"), "{said}");
    let script = std::fs::read_to_string(dir.join("main.py")).expect("main.py");
    assert!(script.starts_with("# stats:"), "{script}");
    assert!(script.contains("import numpy as np"), "{script}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sample-input")).expect("sample"),
        "7\n"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    assert!(
        readme.contains("chorus submit --node HOST:PORT --python main.py"),
        "{readme}"
    );
    // A script is what the grid runs: `task build` says how to submit it.
    let err = task(&["build", s(&dir)]).expect_err("nothing to build");
    assert!(
        err.contains("needs no build") && err.contains("--python"),
        "{err}"
    );
}
