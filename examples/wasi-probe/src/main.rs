//! Chorus probe task: exercises the sandbox's WASI world and prints a
//! transcript that must be the same bytes on every run and every node.
//!
//! The scenario is `argv[1]`, or else the first word on stdin (the rest of
//! stdin stays unread for the scenario):
//!
//! - `tour [MOUNT...]`: args, env, preopens; every entry under every mount
//!   (type, size, nlink, ino, dev, mtime, atime, link target, FNV-1a of the
//!   contents); then writes, appends, renames, truncates, makes directories,
//!   symbolic and hard links in the first mount and walks again; the rest of
//!   stdin; clocks; 16 random bytes.
//! - `escape`: tries to leave the first mount every way it can think of and
//!   prints each attempt's error (`raw_os_error` and kind).
//! - `flood N`: writes up to N files of 64 KiB into the first mount,
//!   printing each, until an error (the sandbox stops it at its scratch limit).
//! - `poll`: `poll_oneoff` on stdin (with a clock beside it), before and after
//!   reading stdin to its end, and on stdout.
//!
//! The calls std does not expose (preopen names, raw filestat, poll, clocks,
//! random) are declared by hand in `raw`; on other targets they are absent
//! and the probe says so (it is built for the host only to be linted).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The raw `wasi_snapshot_preview1` calls the probe makes itself.
#[cfg(target_os = "wasi")]
mod raw {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn fd_prestat_get(fd: i32, out: i32) -> i32;
        fn fd_prestat_dir_name(fd: i32, buf: i32, len: i32) -> i32;
        fn path_filestat_get(fd: i32, flags: i32, path: i32, len: i32, out: i32) -> i32;
        fn poll_oneoff(subs: i32, events: i32, n: i32, out: i32) -> i32;
        fn clock_time_get(id: i32, precision: i64, out: i32) -> i32;
        fn clock_res_get(id: i32, out: i32) -> i32;
        fn random_get(buf: i32, len: i32) -> i32;
    }

    fn p<T>(x: *const T) -> i32 {
        x as usize as i32
    }

    /// The name of preopen `fd`, or the errno.
    pub fn prestat(fd: u32) -> Result<String, i32> {
        let mut st = [0u8; 8];
        let e = unsafe { fd_prestat_get(fd as i32, p(st.as_mut_ptr())) };
        if e != 0 {
            return Err(e);
        }
        let len = u32::from_le_bytes([st[4], st[5], st[6], st[7]]);
        let mut name = vec![0u8; len as usize];
        let e = unsafe { fd_prestat_dir_name(fd as i32, p(name.as_mut_ptr()), len as i32) };
        if e != 0 {
            return Err(e);
        }
        Ok(String::from_utf8_lossy(&name).into_owned())
    }

    /// (dev, ino, filetype, nlink, size, atim, mtim, ctim) of `path` under
    /// preopen `fd`, not following a final symbolic link.
    pub fn filestat(fd: u32, path: &str) -> Result<[u64; 8], i32> {
        let mut b = [0u8; 64];
        let e = unsafe {
            path_filestat_get(
                fd as i32,
                0,
                p(path.as_ptr()),
                path.len() as i32,
                p(b.as_mut_ptr()),
            )
        };
        if e != 0 {
            return Err(e);
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Ok([
            u(0),
            u(8),
            u64::from(b[16]),
            u(24),
            u(32),
            u(40),
            u(48),
            u(56),
        ])
    }

    /// One subscription for `poll`.
    pub enum Sub {
        Read(u32),
        Write(u32),
        /// Clock id, timeout in ns, absolute.
        Clock(u32, u64, bool),
    }

    /// (userdata, error, type, nbytes, flags) of one event.
    pub type Event = (u64, u16, u8, u64, u16);

    /// The events `poll_oneoff` reports for `subs` (userdata = index + 1),
    /// or its errno.
    pub fn poll(subs: &[Sub]) -> Result<Vec<Event>, i32> {
        let mut raw = vec![0u8; 48 * subs.len()];
        for (i, s) in subs.iter().enumerate() {
            let b = &mut raw[i * 48..(i + 1) * 48];
            b[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            match *s {
                Sub::Clock(id, timeout, abs) => {
                    b[8] = 0;
                    b[16..20].copy_from_slice(&id.to_le_bytes());
                    b[24..32].copy_from_slice(&timeout.to_le_bytes());
                    b[40..42].copy_from_slice(&u16::from(abs).to_le_bytes());
                }
                Sub::Read(fd) | Sub::Write(fd) => {
                    b[8] = if matches!(s, Sub::Read(_)) { 1 } else { 2 };
                    b[16..20].copy_from_slice(&fd.to_le_bytes());
                }
            }
        }
        let mut events = vec![0u8; 32 * subs.len()];
        let mut n = 0u32;
        let e = unsafe {
            poll_oneoff(
                p(raw.as_ptr()),
                p(events.as_mut_ptr()),
                subs.len() as i32,
                p(&mut n as *mut u32),
            )
        };
        if e != 0 {
            return Err(e);
        }
        let u64_at =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Ok(events
            .chunks_exact(32)
            .take(n as usize)
            .map(|b| {
                (
                    u64_at(b, 0),
                    u16::from_le_bytes([b[8], b[9]]),
                    b[10],
                    u64_at(b, 16),
                    u16::from_le_bytes([b[24], b[25]]),
                )
            })
            .collect())
    }

    /// (resolution, time) of clock `id`, or the errno.
    pub fn clock(id: u32) -> Result<(u64, u64), i32> {
        let (mut res, mut now) = (0u64, 0u64);
        let e = unsafe { clock_res_get(id as i32, p(&mut res as *mut u64)) };
        if e != 0 {
            return Err(e);
        }
        let e = unsafe { clock_time_get(id as i32, 1, p(&mut now as *mut u64)) };
        if e != 0 {
            return Err(e);
        }
        Ok((res, now))
    }

    pub fn random(buf: &mut [u8]) -> Result<(), i32> {
        match unsafe { random_get(p(buf.as_mut_ptr()), buf.len() as i32) } {
            0 => Ok(()),
            e => Err(e),
        }
    }
}

/// Stand-ins off WASI (the probe is built for the host only to be linted).
#[cfg(not(target_os = "wasi"))]
mod raw {
    const NOSYS: i32 = 52;
    pub type Event = (u64, u16, u8, u64, u16);
    #[allow(dead_code)]
    pub enum Sub {
        Read(u32),
        Write(u32),
        Clock(u32, u64, bool),
    }
    pub fn prestat(_: u32) -> Result<String, i32> {
        Err(NOSYS)
    }
    pub fn filestat(_: u32, _: &str) -> Result<[u64; 8], i32> {
        Err(NOSYS)
    }
    pub fn poll(_: &[Sub]) -> Result<Vec<Event>, i32> {
        Err(NOSYS)
    }
    pub fn clock(_: u32) -> Result<(u64, u64), i32> {
        Err(NOSYS)
    }
    pub fn random(_: &mut [u8]) -> Result<(), i32> {
        Err(NOSYS)
    }
}

/// FNV-1a, 64 bits: a content fingerprint with no dependency.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `ok` or `err RAW KIND` for an I/O result.
fn res<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("err {} {:?}", e.raw_os_error().unwrap_or(-1), e.kind()),
    }
}

/// Standard input, unbuffered (fd 0), so what the probe does not read stays
/// in the sandbox's pipe for `poll_oneoff` to see.
fn stdin_raw() -> std::mem::ManuallyDrop<File> {
    #[cfg(target_os = "wasi")]
    {
        use std::os::fd::FromRawFd;
        // fd 0 is open for the whole run; ManuallyDrop never closes it.
        std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) })
    }
    #[cfg(not(target_os = "wasi"))]
    {
        std::mem::ManuallyDrop::new(File::open("/dev/stdin").expect("stdin"))
    }
}

/// The first whitespace-delimited word on stdin, read byte by byte (the
/// byte after it is consumed too).
fn stdin_word() -> String {
    let mut input = stdin_raw();
    let mut word = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = input.read(&mut b) {
        if b[0].is_ascii_whitespace() {
            if word.is_empty() {
                continue;
            }
            break;
        }
        word.push(b[0]);
    }
    String::from_utf8_lossy(&word).into_owned()
}

fn rest_of_stdin() -> io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    stdin_raw().read_to_end(&mut rest)?;
    Ok(rest)
}

/// The preopens, fd 3 upwards, until the first fd that is none.
fn preopens() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for fd in 3.. {
        match raw::prestat(fd) {
            Ok(name) => out.push((fd, name)),
            Err(_) => break,
        }
    }
    out
}

/// The preopen holding absolute `path` (longest name first) and the path
/// relative to it.
fn under<'a>(pre: &'a [(u32, String)], path: &'a str) -> Option<(u32, &'a str)> {
    pre.iter()
        .filter_map(|(fd, name)| {
            let rest = if name == "/" {
                path.strip_prefix('/')?
            } else {
                let r = path.strip_prefix(name.as_str())?;
                if !r.is_empty() && !r.starts_with('/') {
                    return None;
                }
                r.trim_start_matches('/')
            };
            Some((name.len(), *fd, if rest.is_empty() { "." } else { rest }))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, fd, rel)| (fd, rel))
}

fn nanos(t: io::Result<SystemTime>) -> String {
    match t {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos().to_string(),
            Err(e) => format!("-{}", e.duration().as_nanos()),
        },
        Err(e) => format!("err {}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// One line for `path`: what std's metadata and the raw filestat say.
fn describe(pre: &[(u32, String)], path: &str) -> String {
    let mut line = path.to_string();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return format!("{line} {}", res::<()>(&Err(e))),
    };
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    line += &format!(
        " {kind} size={} mtime={} atime={}",
        meta.len(),
        nanos(meta.modified()),
        nanos(meta.accessed())
    );
    match under(pre, path).map(|(fd, rel)| raw::filestat(fd, rel)) {
        Some(Ok([dev, ino, _ft, nlink, size, _atim, _mtim, ctim])) => {
            line += &format!(" dev={dev} ino={ino:016x} nlink={nlink} ctime={ctim}");
            if size != meta.len() {
                line += &format!(" RAW-SIZE-DIFFERS={size}");
            }
        }
        Some(Err(e)) => line += &format!(" filestat=err {e}"),
        None => line += " filestat=no-preopen",
    }
    if ft.is_symlink() {
        match fs::read_link(path) {
            Ok(t) => line += &format!(" -> {}", t.display()),
            Err(e) => line += &format!(" readlink={}", res::<()>(&Err(e))),
        }
    }
    if ft.is_file() {
        match fs::read(path) {
            Ok(b) => line += &format!(" fnv={:016x}", fnv(&b)),
            Err(e) => line += &format!(" read={}", res::<()>(&Err(e))),
        }
    }
    line
}

/// Every entry under `dir`, depth first, in the order `read_dir` gives.
fn walk(pre: &[(u32, String)], dir: &str) {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            println!("{dir} read_dir {}", res::<()>(&Err(e)));
            return;
        }
    };
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(e) => {
                println!("{dir} entry {}", res::<()>(&Err(e)));
                continue;
            }
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if dir.ends_with('/') {
            format!("{dir}{name}")
        } else {
            format!("{dir}/{name}")
        };
        println!("{}", describe(pre, &path));
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(pre, &path);
        }
    }
}

fn join(mount: &str, rel: &str) -> String {
    if mount.ends_with('/') {
        format!("{mount}{rel}")
    } else {
        format!("{mount}/{rel}")
    }
}

fn tour(args: &[String], from_stdin: bool) {
    println!("== args");
    for (i, a) in std::env::args().enumerate() {
        println!("argv[{i}]={a}");
    }
    println!("== env");
    for (k, v) in std::env::vars() {
        println!("{k}={v}");
    }
    println!("== preopens");
    let pre = preopens();
    for (fd, name) in &pre {
        println!("fd {fd} {name}");
    }
    let mounts: Vec<String> = if args.is_empty() {
        pre.iter().map(|(_, n)| n.clone()).collect()
    } else {
        args.to_vec()
    };
    println!("== tree before");
    for m in &mounts {
        println!("{}", describe(&pre, m));
        walk(&pre, m);
    }

    println!("== changes");
    let Some(m) = mounts.first() else {
        println!("no mount");
        return;
    };
    let p = |rel: &str| join(m, rel);
    let r = fs::write(p("new.txt"), b"hello\n");
    println!("write new.txt {}", res(&r));
    let r = OpenOptions::new()
        .append(true)
        .open(p("new.txt"))
        .and_then(|mut f| f.write_all(b"world\n"));
    println!("append new.txt {}", res(&r));
    let r = fs::read(p("new.txt"));
    println!(
        "read new.txt {} {:?}",
        res(&r),
        r.map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    );
    let r = fs::create_dir_all(p("d1/d2"));
    println!("mkdir -p d1/d2 {}", res(&r));
    let r = fs::create_dir(p("d1"));
    println!("mkdir d1 again {}", res(&r));
    let r = fs::rename(p("new.txt"), p("d1/d2/moved.txt"));
    println!("rename new.txt d1/d2/moved.txt {}", res(&r));
    let r = fs::metadata(p("new.txt"));
    println!("stat new.txt {}", res(&r));
    let r = OpenOptions::new()
        .write(true)
        .open(p("a.txt"))
        .and_then(|f| f.set_len(3));
    println!("truncate a.txt 3 {}", res(&r));
    let r = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p("a.txt"))
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(5))?;
            f.write_all(b"!")?;
            f.seek(SeekFrom::Start(0))?;
            let mut b = Vec::new();
            f.read_to_end(&mut b)?;
            Ok(b)
        });
    println!("write a.txt at 5 {} {:?}", res(&r), r.unwrap_or_default());
    #[allow(deprecated)] // std::fs::soft_link: the only stable symlink call on WASI
    let r = fs::soft_link("d2/moved.txt", p("d1/ln"));
    println!("symlink d1/ln -> d2/moved.txt {}", res(&r));
    let r = fs::read_to_string(p("d1/ln"));
    println!("read d1/ln {} {:?}", res(&r), r.unwrap_or_default());
    let r = fs::hard_link(p("d1/d2/moved.txt"), p("d1/hard"));
    println!("link d1/d2/moved.txt d1/hard {}", res(&r));
    let r = OpenOptions::new()
        .append(true)
        .open(p("d1/hard"))
        .and_then(|mut f| f.write_all(b"via hard link\n"));
    println!("append d1/hard {}", res(&r));
    let r = fs::read_to_string(p("d1/d2/moved.txt"));
    println!(
        "read d1/d2/moved.txt {} {:?}",
        res(&r),
        r.unwrap_or_default()
    );
    let r = fs::rename(p("sub"), p("sub2"));
    println!("rename sub sub2 {}", res(&r));
    let r = fs::remove_file(p("gone.txt"));
    println!("unlink gone.txt {}", res(&r));
    let r = fs::remove_dir(p("d1"));
    println!("rmdir d1 {}", res(&r));
    let r = fs::remove_dir(p("empty"));
    println!("rmdir empty {}", res(&r));

    println!("== tree after");
    for m in &mounts {
        println!("{}", describe(&pre, m));
        walk(&pre, m);
    }

    println!("== stdin");
    let rest = rest_of_stdin();
    match rest {
        Ok(b) => println!(
            "left {} bytes (command from {}) fnv={:016x} {:?}",
            b.len(),
            if from_stdin { "stdin" } else { "argv" },
            fnv(&b),
            String::from_utf8_lossy(&b)
        ),
        Err(e) => println!("stdin {}", res::<()>(&Err(e))),
    }
    println!("== clocks");
    for id in 0..4 {
        match raw::clock(id) {
            Ok((r, t)) => println!("clock {id} res={r} now={t}"),
            Err(e) => println!("clock {id} err {e}"),
        }
    }
    println!("clock 9 {:?}", raw::clock(9));
    println!("SystemTime::now {}", nanos(Ok(SystemTime::now())));
    println!("== random");
    let mut buf = [0u8; 16];
    match raw::random(&mut buf) {
        Ok(()) => println!(
            "{}",
            buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        Err(e) => println!("random err {e}"),
    }
}

fn attempt<T>(what: &str, r: io::Result<T>) {
    println!("{what}: {}", res(&r));
}

fn escape() {
    let pre = preopens();
    let Some((_, m)) = pre.first() else {
        println!("no mount");
        return;
    };
    let p = |rel: &str| join(m, rel);
    println!("mount {m}");
    attempt("open ../x", File::open("../x"));
    attempt("open /etc/passwd", File::open("/etc/passwd"));
    attempt("open /../../etc/passwd", File::open("/../../etc/passwd"));
    attempt(
        "open MOUNT/../../etc/passwd",
        File::open(p("../../etc/passwd")),
    );
    attempt("open MOUNT/..", File::open(p("..")));
    attempt("read_dir MOUNT/..", fs::read_dir(p("..")));
    attempt("stat MOUNT/..", fs::metadata(p("..")));
    #[allow(deprecated)]
    {
        attempt("symlink to-root -> /", fs::soft_link("/", p("to-root")));
        attempt("symlink up -> ../../x", fs::soft_link("../../x", p("up")));
        attempt("symlink dotdot -> ..", fs::soft_link("..", p("dotdot")));
    }
    attempt(
        "open to-root/etc/passwd",
        File::open(p("to-root/etc/passwd")),
    );
    attempt("read_dir to-root", fs::read_dir(p("to-root")));
    attempt("open up", File::open(p("up")));
    attempt("create up", File::create(p("up")));
    attempt("read_dir dotdot", fs::read_dir(p("dotdot")));
    attempt("open dotdot/x", File::open(p("dotdot/x")));
    attempt("lstat up", fs::symlink_metadata(p("up")));
    attempt("readlink up", fs::read_link(p("up")));
    attempt(
        "open out (pre-existing, ../../etc/passwd)",
        File::open(p("out")),
    );
    attempt("stat out", fs::metadata(p("out")));
    attempt("open abs (pre-existing, /etc/passwd)", File::open(p("abs")));
    attempt(
        "open inside (pre-existing, sub/../a.txt)",
        File::open(p("inside")),
    );
    attempt(
        "rename a.txt ../a.txt",
        fs::rename(p("a.txt"), p("../a.txt")),
    );
    attempt(
        "rename a.txt sub/../../a.txt",
        fs::rename(p("a.txt"), p("sub/../../a.txt")),
    );
    attempt(
        "link a.txt ../hard",
        fs::hard_link(p("a.txt"), p("../hard")),
    );
    attempt("mkdir ../newdir", fs::create_dir(p("../newdir")));
    attempt("unlink ../x", fs::remove_file(p("../x")));
    attempt(
        "write sub/../a.txt",
        fs::write(p("sub/../a.txt"), b"inside"),
    );
    attempt(
        "read a.txt",
        fs::read(p("a.txt")).map(|b| println!("  a.txt = {:?}", String::from_utf8_lossy(&b))),
    );
}

fn flood(n: &str) {
    let n: u32 = n.parse().unwrap_or(0);
    let pre = preopens();
    let Some((_, m)) = pre.first() else {
        println!("no mount");
        return;
    };
    let block = vec![0x5a; 64 << 10];
    for i in 0..n {
        let r = fs::write(join(m, &format!("flood-{i:04}")), &block);
        println!("flood {i} {}", res(&r));
        if r.is_err() {
            break;
        }
    }
    println!("flood done");
}

fn show_poll(what: &str, subs: &[raw::Sub]) {
    match raw::poll(subs) {
        Ok(events) => {
            println!("{what}: {} events", events.len());
            for (userdata, error, kind, nbytes, flags) in events {
                println!(
                    "  userdata={userdata} error={error} type={kind} nbytes={nbytes} flags={flags}"
                );
            }
        }
        Err(e) => println!("{what}: err {e}"),
    }
}

fn poll() {
    use raw::Sub;
    let second = 1_000_000_000;
    show_poll(
        "stdin+clock",
        &[Sub::Read(0), Sub::Clock(1, 5 * second, false)],
    );
    show_poll("stdin", &[Sub::Read(0)]);
    let mut head = [0u8; 4];
    let r = stdin_raw().read(&mut head);
    println!(
        "read 4 {} {:?}",
        res(&r),
        String::from_utf8_lossy(&head[..*r.as_ref().unwrap_or(&0)])
    );
    show_poll("stdin after 4", &[Sub::Read(0)]);
    let rest = rest_of_stdin();
    println!(
        "read rest {} {} bytes",
        res(&rest),
        rest.map(|b| b.len()).unwrap_or(0)
    );
    show_poll(
        "stdin at eof",
        &[Sub::Read(0), Sub::Clock(1, second, false)],
    );
    show_poll("clock only", &[Sub::Clock(1, second, false)]);
    show_poll("abs clock past", &[Sub::Clock(0, 1, true)]);
    show_poll("stdout", &[Sub::Write(1)]);
    show_poll("bad fd", &[Sub::Read(99)]);
    show_poll("none", &[]);
    let mut one = [0u8; 1];
    let r = io::stdin().read(&mut one);
    println!("std stdin read at eof {} {}", res(&r), r.unwrap_or(99));
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let (cmd, mut rest, from_stdin) = match argv.get(1) {
        Some(c) => (c.clone(), argv[2..].to_vec(), false),
        None => (stdin_word(), Vec::new(), true),
    };
    if from_stdin && cmd == "flood" {
        rest.push(stdin_word());
    }
    match cmd.as_str() {
        "tour" => tour(&rest, from_stdin),
        "escape" => escape(),
        "flood" => flood(rest.first().map_or("0", String::as_str)),
        "poll" => poll(),
        other => {
            eprintln!("wasi-probe: unknown scenario {other:?} (tour, escape, flood N, poll)");
            std::process::exit(2);
        }
    }
}
