//! The sandbox's WASI world end to end, with a real guest: the committed
//! `examples/wasm/wasi-probe.wasm` (source in `examples/wasi-probe/`), built
//! by Rust's std and wasi-libc, walks and changes its mounts, tries to leave
//! them, fills its scratch space and polls its stdin; the tests check the
//! transcripts it prints, in the library and through `chorus run --dir`.
//!
//! Run: `cargo test --release -p chorus-tests --test wasi_fs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chorus_node::sandbox::{
    DeterministicRng, Engine, EngineConfig, Limits, Outcome, TaskReport, TaskSpec,
};
use chorus_tests::{TempDir, chorus_bin};
use chorus_wasi::Tree;

const PROBE: &[u8] = include_bytes!("../../examples/wasm/wasi-probe.wasm");
/// What every base node's mtime and atime read: UNIX 10^9 s, in ns.
const T: &str = "1000000000000000000";

/// The first mount's base content.
fn data() -> Tree {
    let mut t = Tree::new();
    t.insert_file("a.txt", b"alpha-alpha\n".to_vec()).unwrap();
    t.insert_file("b.bin", (0..=255u8).collect::<Vec<u8>>())
        .unwrap();
    t.insert_file("sub/c.txt", b"c".to_vec()).unwrap();
    t.insert_file("sub/deeper/d.txt", b"dd".to_vec()).unwrap();
    t.insert_dir("empty").unwrap();
    t.insert_file("gone.txt", b"to be removed".to_vec())
        .unwrap();
    t.insert_symlink("link", "a.txt").unwrap();
    t.insert_symlink("inside", "sub/../a.txt").unwrap();
    t.insert_symlink("out", "../../etc/passwd").unwrap();
    t.insert_symlink("abs", "/etc/passwd").unwrap();
    t
}

/// The second mount's base content.
fn extra() -> Tree {
    let mut t = Tree::new();
    t.insert_file("z.txt", b"zed\n".to_vec()).unwrap();
    t
}

fn engine_pooled() -> Engine {
    Engine::new(EngineConfig {
        slots: 2,
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// Another configuration: no pooling allocator, another epoch tick (fuel
/// and every determinism setting stay on).
fn engine_plain() -> Engine {
    Engine::new(EngineConfig {
        slots: 1,
        pooling: false,
        epoch_tick: Duration::from_millis(3),
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn limits() -> Limits {
    Limits {
        wall_ms: 20_000,
        ..Limits::default()
    }
}

fn spec(input: &[u8], args: &[&str], mounts: &[(&str, &Arc<Tree>)]) -> TaskSpec {
    TaskSpec {
        input: input.to_vec(),
        args: args.iter().map(|a| a.to_string()).collect(),
        seed: 7,
        limits: limits(),
        env: vec![
            ("ZETA".into(), "last-but-first".into()),
            ("ALPHA".into(), "1".into()),
            ("WITH_EQ".into(), "a=b".into()),
        ],
        mounts: mounts
            .iter()
            .map(|(g, t)| (g.to_string(), Arc::clone(t)))
            .collect(),
        argv0: None,
    }
}

fn run(engine: &Engine, spec: TaskSpec) -> TaskReport {
    engine
        .run_module_blocking(PROBE, spec)
        .expect("task not refused")
}

fn text(r: &TaskReport) -> String {
    String::from_utf8(r.stdout.clone()).expect("the transcript is UTF-8")
}

fn ok(r: &TaskReport) -> String {
    assert_eq!(
        r.outcome,
        Outcome::Ok,
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    text(r)
}

/// The lines of section `== name` of a transcript.
fn section<'a>(transcript: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("== {name}");
    transcript
        .lines()
        .skip_while(|l| *l != head)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

/// `key=value` of a tree line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let k = format!(" {key}=");
    let at = line
        .find(&k)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        + k.len();
    line[at..].split(' ').next().unwrap_or("")
}

/// Path -> line, for the tree sections.
fn by_path<'a>(lines: &[&'a str]) -> BTreeMap<&'a str, &'a str> {
    lines
        .iter()
        .map(|l| (l.split(' ').next().unwrap_or(""), *l))
        .collect()
}

#[test]
fn tour_is_the_same_bytes_twice_in_one_engine_and_in_another_config() {
    let data = Arc::new(data());
    let extra = Arc::new(extra());
    let mounts = [("/data", &data), ("/extra", &extra)];
    // The scenario on stdin, with more input after it for the probe to read.
    let input = b"tour\nleft for later\n";
    let (pooled, plain) = (engine_pooled(), engine_plain());
    let first = run(&pooled, spec(input, &[], &mounts));
    let t = ok(&first);
    let second = run(&pooled, spec(input, &[], &mounts));
    let third = run(&plain, spec(input, &[], &mounts));
    assert_eq!(first.stdout, second.stdout, "same engine, second run");
    assert_eq!(first.stdout, third.stdout, "pooling off, other epoch tick");
    assert_eq!(third.outcome, Outcome::Ok);
    assert_eq!(
        first.fuel_used, third.fuel_used,
        "fuel is deterministic too"
    );

    // The base trees are untouched by everything the task changed.
    assert_eq!(*data, self::data());
    assert_eq!(*extra, self::extra());

    assert_eq!(section(&t, "args"), ["argv[0]=task"]);
    assert_eq!(
        section(&t, "env"),
        ["ZETA=last-but-first", "ALPHA=1", "WITH_EQ=a=b"],
        "in the order given"
    );
    assert_eq!(section(&t, "preopens"), ["fd 3 /data", "fd 4 /extra"]);

    // Listings come sorted by name, depth first (std's read_dir order is
    // the sandbox's fd_readdir order: nothing sorts on the way).
    let before = section(&t, "tree before");
    let paths: Vec<&str> = before
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/data",
            "/data/a.txt",
            "/data/abs",
            "/data/b.bin",
            "/data/empty",
            "/data/gone.txt",
            "/data/inside",
            "/data/link",
            "/data/out",
            "/data/sub",
            "/data/sub/c.txt",
            "/data/sub/deeper",
            "/data/sub/deeper/d.txt",
            "/extra",
            "/extra/z.txt",
        ]
    );
    let b = by_path(&before);
    // Base nodes: fixed times, the mount's device, sizes, link counts, contents.
    for (path, line) in &b {
        assert_eq!(field(line, "mtime"), T, "{path}");
        assert_eq!(field(line, "atime"), T, "{path}");
        assert_eq!(field(line, "ctime"), T, "{path}");
        let dev = if path.starts_with("/data") { "1" } else { "2" };
        assert_eq!(field(line, "dev"), dev, "{path}");
        assert!(!line.contains("RAW-SIZE-DIFFERS"), "{line}");
    }
    assert_eq!(
        b["/data/a.txt"],
        format!(
            "/data/a.txt file size=12 mtime={T} atime={T} dev=1 ino={} nlink=1 ctime={T} fnv={:016x}",
            field(b["/data/a.txt"], "ino"),
            fnv(b"alpha-alpha\n")
        )
    );
    assert_eq!(
        field(b["/data/b.bin"], "fnv"),
        format!("{:016x}", fnv(&(0..=255u8).collect::<Vec<_>>()))
    );
    assert!(
        b["/data/link"].ends_with(" -> a.txt"),
        "{}",
        b["/data/link"]
    );
    assert!(b["/data/link"].starts_with("/data/link symlink size=5 "));
    assert!(b["/data/out"].ends_with(" -> ../../etc/passwd"));
    assert!(b["/data/abs"].ends_with(" -> /etc/passwd"));
    // A directory's nlink is 2 plus its subdirectories.
    assert_eq!(field(b["/data"], "nlink"), "4", "empty and sub");
    assert_eq!(field(b["/data/sub"], "nlink"), "3");
    assert_eq!(field(b["/data/empty"], "nlink"), "2");
    assert!(b["/data"].starts_with("/data dir size=0 "));
    // Inode numbers: distinct across every node of both mounts.
    let inos: BTreeSet<&str> = b.values().map(|l| field(l, "ino")).collect();
    assert_eq!(inos.len(), b.len(), "inode numbers collide: {before:#?}");

    assert_eq!(
        section(&t, "changes"),
        [
            "write new.txt ok",
            "append new.txt ok",
            "read new.txt ok \"hello\\nworld\\n\"",
            "mkdir -p d1/d2 ok",
            "mkdir d1 again err 20 AlreadyExists",
            "rename new.txt d1/d2/moved.txt ok",
            "stat new.txt err 44 NotFound",
            "truncate a.txt 3 ok",
            "write a.txt at 5 ok [97, 108, 112, 0, 0, 33]",
            "symlink d1/ln -> d2/moved.txt ok",
            "read d1/ln ok \"hello\\nworld\\n\"",
            "link d1/d2/moved.txt d1/hard ok",
            "append d1/hard ok",
            "read d1/d2/moved.txt ok \"hello\\nworld\\nvia hard link\\n\"",
            "rename sub sub2 ok",
            "unlink gone.txt ok",
            "rmdir d1 err 55 Uncategorized",
            "rmdir empty ok",
        ]
    );

    let after = section(&t, "tree after");
    let paths: Vec<&str> = after.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/data",
            "/data/a.txt",
            "/data/abs",
            "/data/b.bin",
            "/data/d1",
            "/data/d1/d2",
            "/data/d1/d2/moved.txt",
            "/data/d1/hard",
            "/data/d1/ln",
            "/data/inside",
            "/data/link",
            "/data/out",
            "/data/sub2",
            "/data/sub2/c.txt",
            "/data/sub2/deeper",
            "/data/sub2/deeper/d.txt",
            "/extra",
            "/extra/z.txt",
        ]
    );
    let a = by_path(&after);
    // Changed in place: the same inode, the new contents, the fixed clock.
    assert_eq!(
        field(a["/data/a.txt"], "ino"),
        field(b["/data/a.txt"], "ino")
    );
    assert_eq!(field(a["/data/a.txt"], "size"), "6");
    assert_eq!(field(a["/data/a.txt"], "mtime"), T);
    assert_eq!(
        field(a["/data/a.txt"], "fnv"),
        format!("{:016x}", fnv(b"alp\0\0!"))
    );
    // Renamed: the same inodes under the new names.
    assert_eq!(field(a["/data/sub2"], "ino"), field(b["/data/sub"], "ino"));
    assert_eq!(
        field(a["/data/sub2/deeper/d.txt"], "ino"),
        field(b["/data/sub/deeper/d.txt"], "ino")
    );
    // A hard link is the same inode, counted twice.
    let moved = a["/data/d1/d2/moved.txt"];
    let hard = a["/data/d1/hard"];
    assert_eq!(field(moved, "ino"), field(hard, "ino"));
    assert_eq!(field(moved, "nlink"), "2");
    assert_eq!(field(hard, "nlink"), "2");
    assert_eq!(field(moved, "size"), "26");
    assert_eq!(field(moved, "dev"), "1");
    assert!(a["/data/d1/ln"].ends_with(" -> d2/moved.txt"));
    assert_eq!(
        field(a["/data"], "nlink"),
        "4",
        "d1 and sub2 (empty is gone)"
    );
    // Every node of the second tree walk still has its own inode number
    // (the hard link aside), the new ones included.
    let inos: BTreeSet<&str> = a.values().map(|l| field(l, "ino")).collect();
    assert_eq!(inos.len(), a.len() - 1, "{after:#?}");
    for l in &after {
        assert_eq!(field(l, "mtime"), T, "{l}");
    }

    assert_eq!(
        section(&t, "stdin"),
        [format!(
            "left 15 bytes (command from stdin) fnv={:016x} \"left for later\\n\"",
            fnv(b"left for later\n")
        )
        .as_str()]
    );
    assert_eq!(
        section(&t, "clocks"),
        [
            "clock 0 res=1 now=1000000000000000000",
            "clock 1 res=1 now=0",
            "clock 2 res=1 now=0",
            "clock 3 res=1 now=0",
            "clock 9 Err(28)",
            "SystemTime::now 1000000000000000000",
        ]
    );
    // The random stream is the task's seed's, from its first byte.
    let mut want = [0u8; 16];
    DeterministicRng::new(7, 0).fill_bytes(&mut want);
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(section(&t, "random"), [hex.as_str()]);

    // Another seed changes the random line and nothing else.
    let mut other = spec(input, &[], &mounts);
    other.seed = 8;
    let t8 = ok(&run(&pooled, other));
    assert_ne!(section(&t8, "random"), section(&t, "random"));
    let strip = |s: &str| s.split("== random").next().unwrap().to_string();
    assert_eq!(strip(&t8), strip(&t));
}

/// FNV-1a 64, as the probe prints it.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn escape_attempts_fail_with_the_exact_errno_and_leave_the_base_alone() {
    let data = Arc::new(data());
    let extra = Arc::new(extra());
    let mounts = [("/data", &data), ("/extra", &extra)];
    let e = engine_pooled();
    let r = run(&e, spec(b"", &["escape"], &mounts));
    let t = ok(&r);
    assert_eq!(run(&e, spec(b"", &["escape"], &mounts)).stdout, r.stdout);
    assert_eq!(*data, self::data());
    assert_eq!(*extra, self::extra());
    let got: Vec<&str> = t.lines().collect();
    // WASI errnos as std reports them: 76 is ENOTCAPABLE.
    let want = [
        "mount /data",
        // No preopen holds these: wasi-libc refuses them itself, with ENOTCAPABLE.
        "open ../x: err 76 Uncategorized",
        "open /etc/passwd: err 76 Uncategorized",
        "open /../../etc/passwd: err 76 Uncategorized",
        // These reach the sandbox, which refuses to leave the preopen.
        "open MOUNT/../../etc/passwd: err 76 Uncategorized",
        "open MOUNT/..: err 76 Uncategorized",
        "read_dir MOUNT/..: err 76 Uncategorized",
        "stat MOUNT/..: err 76 Uncategorized",
        // A link to an absolute path is refused when made; one that
        // climbs out is made, and refused when followed.
        "symlink to-root -> /: err 76 Uncategorized",
        "symlink up -> ../../x: ok",
        "symlink dotdot -> ..: ok",
        "open to-root/etc/passwd: err 44 NotFound",
        "read_dir to-root: err 44 NotFound",
        "open up: err 76 Uncategorized",
        "create up: err 76 Uncategorized",
        "read_dir dotdot: err 76 Uncategorized",
        "open dotdot/x: err 76 Uncategorized",
        "lstat up: ok",
        "readlink up: ok",
        "open out (pre-existing, ../../etc/passwd): err 76 Uncategorized",
        "stat out: err 76 Uncategorized",
        "open abs (pre-existing, /etc/passwd): err 76 Uncategorized",
        "open inside (pre-existing, sub/../a.txt): ok",
        "rename a.txt ../a.txt: err 76 Uncategorized",
        "rename a.txt sub/../../a.txt: err 76 Uncategorized",
        "link a.txt ../hard: err 76 Uncategorized",
        "mkdir ../newdir: err 76 Uncategorized",
        "unlink ../x: err 76 Uncategorized",
        "write sub/../a.txt: ok",
        "  a.txt = \"inside\"",
        "read a.txt: ok",
    ];
    assert_eq!(got, want, "transcript:\n{t}");
}

#[test]
fn flood_stops_at_the_scratch_limit_the_same_way_every_time() {
    let empty = Arc::new(Tree::new());
    let mounts = [("/scratch", &empty)];
    let flood = |engine: &Engine| {
        let mut s = spec(b"", &["flood", "100"], &mounts);
        s.limits.scratch_bytes = 1 << 20;
        run(engine, s)
    };
    let (a, b) = (engine_pooled(), engine_plain());
    let first = flood(&a);
    let second = flood(&a);
    let third = flood(&b);
    assert_eq!(first.outcome, Outcome::ScratchLimit, "{}", text(&first));
    assert_eq!(second.outcome, Outcome::ScratchLimit);
    assert_eq!(third.outcome, Outcome::ScratchLimit);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.stdout, third.stdout);
    assert_eq!(first.fuel_used, third.fuel_used);
    // 1 MiB holds the root's 64 bytes plus 15 files of 64 KiB + 64 + a
    // 10-byte name; the 16th file's write passes it and stops the task
    // there: no error for the guest to print, no "flood done".
    let want: Vec<String> = (0..15).map(|i| format!("flood {i} ok")).collect();
    assert_eq!(text(&first).lines().collect::<Vec<_>>(), want);
    assert!(Arc::strong_count(&empty) >= 1 && empty.is_empty());

    // Under the default scratch limit the same flood of 4 files ends well.
    let r = run(&a, spec(b"", &["flood", "4"], &mounts));
    assert_eq!(
        ok(&r),
        "flood 0 ok\nflood 1 ok\nflood 2 ok\nflood 3 ok\nflood done\n"
    );
}

#[test]
fn arguments_and_environment_reach_the_guest_in_order() {
    let empty = Arc::new(Tree::new());
    let mut s = spec(
        b"",
        &["tour", "/m", "--x", "", "two words"],
        &[("/m", &empty)],
    );
    s.argv0 = Some("probe".into());
    let t = ok(&run(&engine_pooled(), s));
    assert_eq!(
        section(&t, "args"),
        [
            "argv[0]=probe",
            "argv[1]=tour",
            "argv[2]=/m",
            "argv[3]=--x",
            "argv[4]=",
            "argv[5]=two words"
        ]
    );
    assert_eq!(
        section(&t, "env"),
        ["ZETA=last-but-first", "ALPHA=1", "WITH_EQ=a=b"]
    );
    assert_eq!(
        section(&t, "stdin"),
        ["left 0 bytes (command from argv) fnv=cbf29ce484222325 \"\""]
    );
}

#[test]
fn poll_oneoff_on_stdin_reports_the_bytes_left_and_returns() {
    let r = run(&engine_pooled(), spec(b"0123456789", &["poll"], &[]));
    let t = ok(&r);
    assert!(r.wall < Duration::from_secs(5), "{:?}", r.wall);
    // Event types: 0 clock, 1 fd_read, 2 fd_write; flag 1 is hangup (EOF).
    let want = "\
stdin+clock: 1 events
  userdata=1 error=0 type=1 nbytes=10 flags=0
stdin: 1 events
  userdata=1 error=0 type=1 nbytes=10 flags=0
read 4 ok \"0123\"
stdin after 4: 1 events
  userdata=1 error=0 type=1 nbytes=6 flags=0
read rest ok 6 bytes
stdin at eof: 1 events
  userdata=1 error=0 type=1 nbytes=0 flags=1
clock only: 1 events
  userdata=1 error=0 type=0 nbytes=0 flags=0
abs clock past: 1 events
  userdata=1 error=0 type=0 nbytes=0 flags=0
stdout: 1 events
  userdata=1 error=0 type=2 nbytes=0 flags=0
bad fd: 1 events
  userdata=1 error=8 type=1 nbytes=0 flags=0
none: err 28
std stdin read at eof ok 0
";
    assert_eq!(t, want);
}

/// What a host directory holds, as far as a task could have changed it:
/// every path with its kind, bytes or link target, permissions and mtime.
fn snapshot(root: &Path) -> BTreeMap<String, (String, Vec<u8>, u32, SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let (kind, bytes) = if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                ("link".to_string(), t.to_string_lossy().as_bytes().to_vec())
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir".to_string(), Vec::new())
            } else {
                ("file".to_string(), std::fs::read(&p).unwrap())
            };
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(
                rel,
                (kind, bytes, m.permissions().mode(), m.modified().unwrap()),
            );
        }
    }
    let m = std::fs::metadata(root).unwrap();
    out.insert(
        ".".into(),
        (
            "dir".into(),
            Vec::new(),
            m.permissions().mode(),
            m.modified().unwrap(),
        ),
    );
    out
}

#[test]
fn chorus_run_dir_mounts_a_host_copy_and_never_writes_back() {
    let tmp = TempDir::new("wasi-fs", "cli");
    let host = tmp.0.join("data");
    // The same content as `data()`, on disk.
    for (path, node) in data().iter() {
        let p = host.join(path);
        match node {
            chorus_wasi::BaseNode::Dir => std::fs::create_dir_all(&p).unwrap(),
            chorus_wasi::BaseNode::File(b) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b).unwrap();
            }
            chorus_wasi::BaseNode::Symlink(t) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(t, &p).unwrap();
            }
        }
    }
    std::fs::create_dir_all(host.join("empty")).unwrap();
    let module = tmp.0.join("probe.wasm");
    std::fs::write(&module, PROBE).unwrap();
    let before = snapshot(&host);

    let out = Command::new(chorus_bin())
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/data", host.display()))
        .args(["--env", "ZETA=z", "--env", "ALPHA=1", "--env", "ALPHA=2"])
        .args(["--arg", "tour", "--arg", "/data"])
        .arg(&module)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"piped input\n")?;
            c.wait_with_output()
        })
        .expect("chorus run");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        section(&t, "args"),
        ["argv[0]=task", "argv[1]=tour", "argv[2]=/data"]
    );
    // The command line's environment is canonical: sorted by key, the last
    // value of a key wins (as a bundle's manifest holds it).
    assert_eq!(section(&t, "env"), ["ALPHA=2", "ZETA=z"]);
    assert_eq!(section(&t, "preopens"), ["fd 3 /data"]);
    assert_eq!(
        section(&t, "stdin")[0],
        format!(
            "left 12 bytes (command from argv) fnv={:016x} \"piped input\\n\"",
            fnv(b"piped input\n")
        )
    );

    // The host content looks to the task exactly as the same tree built in
    // memory does, and the task's changes went as in the library.
    let data = Arc::new(data());
    let lib = ok(&run(
        &engine_pooled(),
        TaskSpec {
            input: b"piped input\n".to_vec(),
            args: vec!["tour".into(), "/data".into()],
            env: vec![("ALPHA".into(), "2".into()), ("ZETA".into(), "z".into())],
            mounts: vec![("/data".into(), data)],
            limits: limits(),
            seed: 0,
            argv0: None,
        },
    ));
    assert_eq!(t, lib, "chorus run --dir and the library differ");
    assert!(t.contains("\nrename sub sub2 ok\n"));
    assert!(t.contains("\n/data/d1/d2/moved.txt file size=26 "));

    // Nothing reached the host: same entries, bytes, modes and mtimes.
    assert_eq!(snapshot(&host), before);
    assert!(!host.join("d1").exists() && host.join("gone.txt").exists());
}
