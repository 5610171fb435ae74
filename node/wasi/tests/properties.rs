//! The properties the grid relies on: determinism, containment inside the
//! preopens, an untouched base tree, and a scratch limit that stops at the
//! same call every time.

mod common;

use std::sync::Arc;

use chorus_wasi::abi::{errno, oflags};
use chorus_wasi::{BaseNode, Config, SCRATCH_NODE_COST, Stop, Tree, TreeError, Wasi};
use common::*;

/// A fixed script of calls touching most of the filesystem; returns what a
/// guest could observe (listings, stats, bytes read) as one byte string.
fn script(g: &mut Guest) -> Vec<u8> {
    let mut seen = Vec::new();
    g.p("path_create_directory", ROOT, "out");
    for i in 0..20 {
        let fd = g
            .open(ROOT, &format!("out/f{i:02}"), oflags::CREAT, 0)
            .unwrap();
        g.write_ok(fd, format!("file {i}\n").repeat(i + 1).as_bytes());
        g.ok("fd_close", &[fd as u64]);
    }
    g.rename("out/f03", "out/zz");
    g.p("path_unlink_file", ROOT, "out/f05");
    g.symlink("zz", "out/sym");
    let fd = g.open(ROOT, "hello.txt", 0, fdflags_append()).unwrap();
    g.write_ok(fd, b"more\n");
    let d = g.open_ro(ROOT, "out", 0).unwrap();
    seen.extend(g.readdir_raw(d, 0, BUF_LEN));
    let root = g.readdir_raw(ROOT, 0, BUF_LEN);
    seen.extend(root);
    for p in ["out", "out/zz", "out/sym", "hello.txt", "dir/a.txt"] {
        seen.extend(g.stat(ROOT, p, false).unwrap());
    }
    g.ok("fd_seek", &[fd as u64, 0, 0, OUT as u64]);
    seen.extend(g.read(fd, 100).unwrap());
    g.ok("random_get", &[BUF as u64, 64]);
    seen.extend(g.get(BUF, 64));
    g.write_ok(1, b"done\n");
    seen
}

fn fdflags_append() -> u16 {
    chorus_wasi::abi::fdflags::APPEND
}

#[test]
fn same_calls_same_bytes() {
    let mut a = Guest::new();
    let mut b = Guest::new();
    let sa = script(&mut a);
    let sb = script(&mut b);
    assert_eq!(sa, sb);
    assert!(a.mem == b.mem, "guest memories differ");
    assert_eq!(a.wasi.stdout(), b.wasi.stdout());
    assert_eq!(a.wasi.work(), b.wasi.work());
    assert_eq!(a.wasi.scratch_used(), b.wasi.scratch_used());
    // And the listing itself is what we expect, in byte order.
    let d = a.open_ro(ROOT, "out", 0).unwrap();
    let names: Vec<_> = a.readdir(d).into_iter().map(|e| e.2).collect();
    let mut expect: Vec<String> = vec![".".into(), "..".into()];
    let mut rest: Vec<String> = (0..20)
        .filter(|i| *i != 3 && *i != 5)
        .map(|i| format!("f{i:02}"))
        .collect();
    rest.extend(["sym".into(), "zz".into()]);
    rest.sort();
    expect.extend(rest);
    assert_eq!(names, expect);
}

#[test]
fn inode_numbers_are_stable_and_distinct() {
    let mut a = Guest::new();
    let mut b = Guest::new();
    for g in [&mut a, &mut b] {
        g.open(ROOT, "x", oflags::CREAT, 0).unwrap();
        g.rename("x", "y");
        g.open(ROOT, "x", oflags::CREAT, 0).unwrap();
    }
    let ino = |g: &mut Guest, p: &str| field(&g.stat(ROOT, p, false).unwrap(), 8);
    assert_eq!(ino(&mut a, "x"), ino(&mut b, "x"));
    assert_ne!(
        ino(&mut a, "x"),
        ino(&mut a, "y"),
        "recreated name, new inode"
    );
    assert_eq!(ino(&mut a, "hello.txt"), ino(&mut b, "hello.txt"));
}

#[test]
fn containment_absolute_dotdot_and_symlinks() {
    let mut g = Guest::new();
    for p in ["/etc/passwd", "/", "..", "../x", "dir/../../x", "dir/../.."] {
        assert_eq!(g.open_ro(ROOT, p, 0), Err(errno::NOTCAPABLE), "{p}");
        assert_eq!(g.stat(ROOT, p, true), Err(errno::NOTCAPABLE), "{p}");
    }
    assert_eq!(
        g.p("path_create_directory", ROOT, "/tmp"),
        errno::NOTCAPABLE
    );
    assert_eq!(g.p("path_unlink_file", ROOT, "../x"), errno::NOTCAPABLE);
    // ".." inside the preopen is fine.
    assert!(g.open_ro(ROOT, "dir/../hello.txt", 0).is_ok());
    // A directory fd is a capability of its own: ".." above it is refused.
    let d = g.open_ro(ROOT, "dir", 0).unwrap();
    assert_eq!(g.open_ro(d, "../hello.txt", 0), Err(errno::NOTCAPABLE));
    assert!(g.open_ro(d, "empty/../a.txt", 0).is_ok());
    // A link to an absolute path is refused (it could only lead out, and
    // the official suite expects the refusal); one that climbs out may be
    // created and read, never followed.
    assert_eq!(g.symlink("/", "root"), errno::NOTCAPABLE);
    assert_eq!(g.symlink("/etc/passwd", "dir/pw"), errno::NOTCAPABLE);
    assert_eq!(g.symlink("../../x", "up"), 0);
    assert_eq!(g.symlink("..", "root"), 0);
    assert_eq!(g.symlink("../../etc/passwd", "dir/pw"), 0);
    let (p, l) = g.s(P1, "up");
    g.ok(
        "path_readlink",
        &[ROOT as u64, p, l, BUF as u64, 64, OUT as u64],
    );
    assert_eq!(g.get(BUF, g.u32(OUT) as usize), b"../../x");
    for p in ["root", "root/etc", "up", "dir/pw"] {
        assert_eq!(g.open_ro(ROOT, p, 0), Err(errno::NOTCAPABLE), "{p}");
    }
    assert_eq!(g.stat(ROOT, "root/", false), Err(errno::NOTCAPABLE));
    // Not followed: the link itself.
    assert!(g.stat(ROOT, "up", false).is_ok());
    // A link in a subdirectory may climb to the preopen root, not past it.
    assert_eq!(g.symlink("../hello.txt", "dir/h"), 0);
    assert!(g.open_ro(ROOT, "dir/h", 0).is_ok());
    assert_eq!(g.open_ro(d, "h", 0), Err(errno::NOTCAPABLE));
}

#[test]
fn base_tree_untouched_by_writes_deletes_renames() {
    let base = Arc::new(tree());
    let before = (*base).clone();
    let Some(BaseNode::File(hello)) = base.get("hello.txt").cloned() else {
        panic!("no hello.txt")
    };
    let mut c = config(Tree::new());
    c.preopens = vec![("/".into(), base.clone())];
    let mut g = Guest::with(c.clone());
    let fd = g.open(ROOT, "hello.txt", 0, 0).unwrap();
    g.write_ok(fd, b"HELLO");
    let fd = g.open(ROOT, "dir/b.txt", oflags::TRUNC, 0).unwrap();
    g.write_ok(fd, b"x");
    g.p("path_unlink_file", ROOT, "dir/a.txt");
    g.p("path_unlink_file", ROOT, "dir/link");
    g.p("path_remove_directory", ROOT, "dir/empty");
    g.rename("dir", "moved");
    assert_eq!(*base, before);
    assert_eq!(&*hello, b"hello, world\n");
    // A second world over the same base sees the original.
    let mut h = Guest::with(c);
    let fd = h.open_ro(ROOT, "hello.txt", 0).unwrap();
    assert_eq!(h.read(fd, 100).unwrap(), b"hello, world\n");
    assert!(h.stat(ROOT, "dir/a.txt", false).is_ok());
    drop(g);
    assert_eq!(*base, before);
}

#[test]
fn reading_base_files_and_deleting_them_costs_no_scratch() {
    let mut g = Guest::new();
    let fd = g.open_ro(ROOT, "hello.txt", 0).unwrap();
    g.read(fd, 100).unwrap();
    g.p("path_unlink_file", ROOT, "dir/a.txt");
    g.p("path_remove_directory", ROOT, "dir/empty");
    assert_eq!(g.wasi.scratch_used(), 0);
    // The first write copies the base file: it then costs its size.
    let fd = g.open(ROOT, "dir/b.txt", 0, 0).unwrap();
    g.write_ok(fd, b"b");
    assert_eq!(g.wasi.scratch_used(), 2 + SCRATCH_NODE_COST);
    // Deleting a file the task wrote gives its scratch back.
    g.ok("fd_close", &[fd as u64]);
    g.p("path_unlink_file", ROOT, "dir/b.txt");
    assert_eq!(g.wasi.scratch_used(), 0);
}

/// Writes 1000-byte files until something stops; returns the call count and the stop.
fn flood(scratch: u64) -> (usize, Stop, u64) {
    let mut c = config(tree());
    c.scratch_bytes = scratch;
    let mut g = Guest::with(c);
    let mut calls = 0;
    for i in 0.. {
        calls += 1;
        let fd = match g.open_with(ROOT, 0, &format!("f{i}"), oflags::CREAT, ALL, 0) {
            Ok(fd) => fd,
            Err(e) => panic!("open: {e}"),
        };
        calls += 1;
        match g.write(fd, &[7u8; 1000]) {
            Ok(r) => assert_eq!(r, Ok(1000)),
            Err(stop) => {
                // The stopped write changed nothing.
                assert_eq!(g.file_size(&format!("f{i}")), 0);
                return (calls, stop, g.wasi.scratch_used());
            }
        }
        g.ok("fd_close", &[fd as u64]);
        calls += 1;
    }
    unreachable!()
}

#[test]
fn scratch_flood_stops_at_the_same_call() {
    let a = flood(100_000);
    let b = flood(100_000);
    assert_eq!(a, b);
    assert_eq!(a.1, Stop::ScratchLimit);
    assert!(a.2 <= 100_000);
    assert!(a.0 > 200, "stopped early: {a:?}");
}

#[test]
fn empty_files_and_dirs_cannot_exhaust_memory() {
    let mut c = config(tree());
    c.scratch_bytes = 10_000;
    let mut g = Guest::with(c);
    let mut made = 0;
    let stop = loop {
        let (p, l) = g.s(P1, &format!("d{made}"));
        match g.call("path_create_directory", &[ROOT as u64, p, l]) {
            Ok(0) => made += 1,
            Ok(e) => panic!("errno {e}"),
            Err(s) => break s,
        }
    };
    assert_eq!(stop, Stop::ScratchLimit);
    assert!(made < 10_000 / SCRATCH_NODE_COST as usize);
    assert_eq!(g.stat(ROOT, &format!("d{made}"), false), Err(errno::NOENT));
    // set_size and allocate are charged too.
    let mut c = config(tree());
    c.scratch_bytes = 4096;
    let mut g = Guest::with(c);
    let fd = g.open(ROOT, "big", oflags::CREAT, 0).unwrap() as u64;
    assert_eq!(
        g.call("fd_filestat_set_size", &[fd, 1 << 40]),
        Ok(errno::FBIG as i32)
    );
    assert_eq!(
        g.call("fd_filestat_set_size", &[fd, 1 << 20]),
        Err(Stop::ScratchLimit)
    );
    assert_eq!(
        g.call("fd_allocate", &[fd, 0, 5000]),
        Err(Stop::ScratchLimit)
    );
    assert_eq!(g.call("fd_allocate", &[fd, 0, 1000]), Ok(0));
}

#[test]
fn tree_paths_are_validated() {
    let mut t = Tree::new();
    for bad in [
        "",
        "/abs",
        "a//b",
        "a/./b",
        "../x",
        "a/..",
        "nul\0",
        "trailing/",
    ] {
        assert!(
            matches!(
                t.insert_file(bad, b"x".to_vec()),
                Err(TreeError::InvalidPath { .. })
            ),
            "{bad:?}"
        );
    }
    t.insert_file("a/b/c.txt", b"c".to_vec()).unwrap();
    assert_eq!(t.get("a"), Some(&BaseNode::Dir));
    assert_eq!(t.get("a/b"), Some(&BaseNode::Dir));
    t.insert_dir("a").unwrap();
    assert_eq!(
        t.insert_file("a/b/c.txt/d", b"".to_vec()),
        Err(TreeError::ParentNotDir {
            path: "a/b/c.txt/d".into()
        })
    );
    assert_eq!(
        t.insert_file("a", b"".to_vec()),
        Err(TreeError::Exists { path: "a".into() })
    );
    assert!(matches!(
        t.insert_symlink("s", ""),
        Err(TreeError::InvalidTarget { .. })
    ));
    t.insert_symlink("s", "/abs/is/allowed/in/the/tree")
        .unwrap();
    let names: Vec<_> = t.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(names, ["a", "a/b", "a/b/c.txt", "s"]);
    // Such a tree mounts and its escaping link is refused when followed.
    let mut c: Config = config(Tree::new());
    c.preopens = vec![("/".into(), Arc::new(t))];
    let mut g = Guest::with(c);
    assert_eq!(g.open_ro(ROOT, "s", 0), Err(errno::NOTCAPABLE));
    let fd = g.open_ro(ROOT, "a/b/c.txt", 0).unwrap();
    assert_eq!(g.read(fd, 9).unwrap(), b"c");
    let _ = Wasi::FUNCS;
}

#[test]
fn a_stopped_call_changes_nothing() {
    let mut c = config(tree());
    c.scratch_bytes = 0;
    let mut g = Guest::with(c);
    // Replacing an existing name costs nothing; deleting costs nothing.
    assert_eq!(g.rename("dir/a.txt", "dir/b.txt"), 0);
    assert_eq!(g.p("path_unlink_file", ROOT, "hello.txt"), 0);
    // A new name must be paid for: the rename stops and both names stay as they were.
    let (a, al) = g.s(P1, "dir/b.txt");
    let (b, bl) = g.s(P2, "new-name");
    assert_eq!(
        g.call("path_rename", &[ROOT as u64, a, al, ROOT as u64, b, bl]),
        Err(Stop::ScratchLimit)
    );
    assert_eq!(g.file_size("dir/b.txt"), 1);
    assert_eq!(g.stat(ROOT, "new-name", false), Err(errno::NOENT));
    let fd = g.open_with(ROOT, 0, "dir/b.txt", 0, ALL, 0).unwrap();
    assert_eq!(g.write(fd, b"x"), Err(Stop::ScratchLimit));
    assert_eq!(g.read(fd, 10).unwrap(), b"A");
    assert_eq!(g.wasi.scratch_used(), 0);
}

/// Hostile arguments: every import, 200,000 calls with random words (small
/// numbers, addresses near the end of memory, and huge values) on memory full
/// of random bytes and planted paths. Nothing may panic; the only stops are
/// the typed ones.
#[test]
fn random_calls_never_panic() {
    use chorus_wasi::DeterministicRng;
    let mut rng = DeterministicRng::new(7, 0);
    let mut c = config(tree());
    c.scratch_bytes = 1 << 16;
    c.stdout_cap = 1 << 12;
    let mut g = Guest::with(c);
    // Descriptors 4-7: files and a directory the noise can hit.
    g.open(ROOT, "hello.txt", 0, 0).unwrap();
    g.open(ROOT, "dir/a.txt", 0, 0).unwrap();
    g.open_ro(ROOT, "dir", 0).unwrap();
    g.open(ROOT, "new", oflags::CREAT, 0).unwrap();
    rng.fill_bytes(&mut g.mem);
    let paths = [
        "dir",
        "dir/a.txt",
        "hello.txt",
        "..",
        "x/",
        "dir/link",
        "n",
        "/a",
        "dir/empty/",
    ];
    let mut stops = 0;
    let mut ok = std::collections::BTreeMap::<&str, u32>::new();
    for round in 0..200_000u64 {
        if round % 1000 == 0 {
            for (i, p) in paths.iter().enumerate() {
                g.put(P1 + i as u32 * 16, p.as_bytes());
            }
        }
        let index = (rng.next_u64() % Wasi::FUNCS.len() as u64) as usize;
        let sig = &Wasi::FUNCS[index];
        if sig.name == "proc_exit" {
            continue;
        }
        let args: Vec<u64> = sig
            .params
            .iter()
            .map(|_| match rng.next_u64() % 6 {
                0 => rng.next_u64() % 8,
                1 => u64::from(P1) + (rng.next_u64() % 9) * 16,
                2 => rng.next_u64() % 12,
                3 => (MEM as u64).saturating_sub(rng.next_u64() % 64),
                4 => rng.next_u64() % MEM as u64,
                _ => rng.next_u64(),
            })
            .collect();
        // Keep the standard streams and the preopen, so later calls reach real work.
        if matches!(sig.name, "fd_close" | "fd_renumber") && args.iter().any(|&a| a as u32 <= 7) {
            continue;
        }
        let i = index;
        match g.wasi.call(&mut g.mem, i, &args) {
            Ok(e) => {
                assert!((0..=76).contains(&e), "{} gave {e}", sig.name);
                if e == 0 {
                    *ok.entry(sig.name).or_default() += 1;
                }
            }
            Err(Stop::ScratchLimit | Stop::StdoutCap | Stop::StderrCap) => stops += 1,
            Err(s) => panic!("{}{args:?}: unexpected {s:?}", sig.name),
        }
    }
    assert!(g.wasi.scratch_used() <= 1 << 16);
    // The noise reaches past argument checking into real work.
    for name in [
        "fd_read",
        "fd_pread",
        "fd_write",
        "fd_seek",
        "fd_readdir",
        "path_create_directory",
        "poll_oneoff",
    ] {
        assert!(
            ok.get(name).copied().unwrap_or(0) > 0,
            "{name} never succeeded: {ok:?}"
        );
    }
    let _ = stops;
}
