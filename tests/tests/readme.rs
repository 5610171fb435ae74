//! The READMEs are tested: every ```sh block of README.md and
//! dashboards/README.md runs as written, in order, in one bash (as a reader
//! runs them in one terminal), from the repository root, with `set -euo
//! pipefail`; a block that goes stale fails here.
//!
//! A block may be marked by an HTML comment on the line before it:
//! - `<!-- readme-test: skip REASON -->`: not run (it installs system
//!   packages, or needs software CI machines cannot have). Every skip and
//!   its reason is listed in [`SKIPS`]; a new one fails this test until it
//!   is listed there, so nothing is skipped silently.
//! - `<!-- readme-test: background -->`: a server that runs in the
//!   foreground until stopped (Prometheus); it is started with `&`, as in
//!   a terminal of its own.
//!
//! One line is never run: README.md's test command (it runs this test).
//! The harness is bounded: the script gets [`LIMIT`]; then, or when it
//! ends, its whole process group (every node a block started with `&`) is
//! stopped, SIGTERM first, SIGKILL after a grace period.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most one README's blocks may take, all together.
const LIMIT: Duration = Duration::from_secs(20 * 60);

/// Every block a README may skip, by file and reason.
const SKIPS: &[(&str, &str)] = &[
    (
        "README.md",
        "downloads a 98 MB wheel and compiles CPython; tests/tests/python.rs runs this job (20 tasks, 3 nodes, replicas 2) in CI",
    ),
    (
        "README.md",
        "installs system packages (CI's .ci/run installs these)",
    ),
    (
        "README.md",
        "rewrites the committed modules; CI runs build.sh --check as its own step",
    ),
    (
        "dashboards/README.md",
        "needs Docker and the Grafana image (no registry on CI machines)",
    ),
    (
        "dashboards/README.md",
        "needs a Grafana install (not in Debian's archive)",
    ),
];

/// README.md's test command: the line that runs this test.
const TEST_COMMAND: &str = "cargo test --release --workspace";

#[derive(Debug, PartialEq)]
enum Mark {
    Run,
    Background,
    Skip(String),
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    code: String,
    mark: Mark,
}

/// The ```sh blocks of `md`, with their marks.
fn blocks(md: &str) -> Vec<Block> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() == "```sh" {
            let mark = match i
                .checked_sub(1)
                .map(|p| lines[p].trim())
                .and_then(|l| l.strip_prefix("<!-- readme-test:"))
                .and_then(|l| l.strip_suffix("-->"))
                .map(str::trim)
            {
                None => Mark::Run,
                Some("background") => Mark::Background,
                Some(other) => match other.strip_prefix("skip ") {
                    Some(reason) => Mark::Skip(reason.trim().to_string()),
                    None => panic!("line {i}: unknown readme-test mark {other:?}"),
                },
            };
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_end() != "```" {
                end += 1;
            }
            assert!(end < lines.len(), "line {}: block never closed", i + 1);
            out.push(Block {
                line: i + 1,
                code: lines[start..end].join("\n"),
                mark,
            });
            i = end;
        }
        i += 1;
    }
    out
}

/// One bash script running `file`'s blocks in order.
fn script(file: &str, blocks: &[Block]) -> String {
    let mut s = String::from("set -euo pipefail\n");
    for b in blocks {
        let kind = match b.mark {
            Mark::Run => "run",
            Mark::Background => "background",
            Mark::Skip(_) => "skipped",
        };
        s.push_str(&format!("echo '>>> {file}:{} {kind}' >&2\n", b.line));
        match &b.mark {
            Mark::Skip(_) => {}
            Mark::Run => {
                for line in b.code.lines() {
                    if line.trim_start().starts_with(TEST_COMMAND) {
                        s.push_str(": # the test command: it runs this harness\n");
                    } else {
                        s.push_str(line);
                        s.push('\n');
                    }
                }
            }
            Mark::Background => {
                s.push_str("(\n");
                s.push_str(&b.code);
                s.push_str("\n) &\n");
            }
        }
    }
    s.push_str("echo '>>> all blocks ran' >&2\n");
    s
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Stops every process of group `pgid`: SIGTERM (nodes leave), then
/// SIGKILL for what is left after 10 s.
fn stop_group(pgid: u32) {
    let group = format!("-{pgid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    for _ in 0..100 {
        let alive = Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
}

fn run_readme(file: &str) {
    let root = repo();
    let md = std::fs::read_to_string(root.join(file)).expect("readme");
    let blocks = blocks(&md);
    assert!(!blocks.is_empty(), "{file} has no sh blocks");
    let skips: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match &b.mark {
            Mark::Skip(r) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    let listed: Vec<&str> = SKIPS
        .iter()
        .filter(|(f, _)| *f == file)
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(skips, listed, "{file}: skipped blocks differ from SKIPS");
    if file == "README.md" {
        let n = md.lines().filter(|l| l.starts_with(TEST_COMMAND)).count();
        assert_eq!(
            n, 1,
            "README.md names its test command once, in its first block"
        );
    }

    // A home of its own: `~/mytask`, `~/.chorus-client` land there. Cargo
    // and rustup keep theirs.
    let real_home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let home = std::env::temp_dir().join(format!(
        "chorus-readme-{}-{}",
        file.replace('/', "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("home");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home.join(".cargo"));
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home.join(".rustup"));
    let log = home.join("output.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script(file, &blocks))
        .current_dir(&root)
        .env("HOME", &home)
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home)
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("bash");
    let pgid = child.id();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    stop_group(pgid);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    match status {
        Some(s) if s.success() => {
            assert!(output.contains(">>> all blocks ran"), "{tail}");
            println!(
                "{file}: {} blocks ({} skipped) ran in {:.0} s",
                blocks.len(),
                skips.len(),
                start.elapsed().as_secs_f64()
            );
        }
        Some(s) => panic!("{file}: a block failed ({s}); the last lines:\n{tail}"),
        None => panic!("{file}: over {LIMIT:?}; the last lines:\n{tail}"),
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn every_block_of_the_readme_runs_as_written() {
    run_readme("README.md");
}

#[test]
fn every_block_of_the_dashboards_readme_runs_as_written() {
    run_readme("dashboards/README.md");
}

#[test]
fn marks_are_read_and_the_script_keeps_the_test_command_out() {
    let md = "x\n```sh\necho a\ncargo test --release --workspace  # t\n```\n<!-- readme-test: skip why -->\n```sh\nexit 1\n```\n<!-- readme-test: background -->\n```sh\nsleep 1\n```\n```text\nno\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].line, 2);
    assert_eq!(b[1].mark, Mark::Skip("why".into()));
    assert_eq!(b[2].mark, Mark::Background);
    let s = script("M", &b);
    assert!(s.contains("echo a\n"));
    assert!(!s.contains("cargo test --release --workspace  # t"));
    assert!(!s.contains("exit 1"));
    assert!(s.contains("(\nsleep 1\n) &\n"));
}
