//! A guest stand-in: a `Wasi` plus a Vec as linear memory, and helpers that
//! lay out arguments the way a wasm32 guest would.
#![allow(dead_code)]

use std::sync::Arc;

use chorus_wasi::abi::{errno, rights};
use chorus_wasi::{Config, Stop, Tree, Wasi};

pub const MEM: usize = 1 << 16;
/// Scratch addresses: results, iovecs, two paths, a data buffer.
pub const OUT: u32 = 0x10;
pub const OUT2: u32 = 0x20;
pub const IOV: u32 = 0x100;
pub const P1: u32 = 0x1000;
pub const P2: u32 = 0x1800;
pub const BUF: u32 = 0x4000;
pub const BUF_LEN: u32 = 0x4000;

pub const ROOT: u32 = 3;
pub const ALL: u64 = rights::FILE | rights::DIR;

pub struct Guest {
    pub wasi: Wasi,
    pub mem: Vec<u8>,
}

pub fn tree() -> Tree {
    let mut t = Tree::new();
    t.insert_file("hello.txt", b"hello, world\n".to_vec())
        .unwrap();
    t.insert_file("dir/a.txt", b"A".to_vec()).unwrap();
    t.insert_file("dir/b.txt", b"BB".to_vec()).unwrap();
    t.insert_dir("dir/empty").unwrap();
    t.insert_symlink("dir/link", "a.txt").unwrap();
    t
}

pub fn config(tree: Tree) -> Config {
    Config {
        args: vec!["task".into(), "--n".into(), "3".into()],
        env: vec![("A".into(), "1".into()), ("PATH".into(), "/x".into())],
        stdin: b"line one\nline two\n".to_vec(),
        stdout_cap: 1 << 20,
        stderr_cap: 1 << 20,
        preopens: vec![("/".into(), Arc::new(tree))],
        seed: 42,
        scratch_bytes: 1 << 20,
    }
}

impl Guest {
    pub fn new() -> Self {
        Self::with(config(tree()))
    }

    pub fn with(config: Config) -> Self {
        Guest {
            wasi: Wasi::new(config),
            mem: vec![0; MEM],
        }
    }

    pub fn call(&mut self, name: &str, args: &[u64]) -> Result<i32, Stop> {
        let i = Wasi::func_index(name).unwrap_or_else(|| panic!("no import {name}"));
        self.wasi.call(&mut self.mem, i, args)
    }

    /// The errno of a call that must not stop.
    pub fn e(&mut self, name: &str, args: &[u64]) -> u16 {
        self.call(name, args).expect("stopped") as u16
    }

    pub fn ok(&mut self, name: &str, args: &[u64]) {
        assert_eq!(self.e(name, args), errno::SUCCESS, "{name}{args:?}");
    }

    pub fn put(&mut self, at: u32, bytes: &[u8]) {
        self.mem[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    pub fn get(&self, at: u32, len: usize) -> Vec<u8> {
        self.mem[at as usize..at as usize + len].to_vec()
    }

    pub fn u16(&self, at: u32) -> u16 {
        u16::from_le_bytes(self.get(at, 2).try_into().unwrap())
    }

    pub fn u32(&self, at: u32) -> u32 {
        u32::from_le_bytes(self.get(at, 4).try_into().unwrap())
    }

    pub fn u64(&self, at: u32) -> u64 {
        u64::from_le_bytes(self.get(at, 8).try_into().unwrap())
    }

    /// Writes `s` at `at`; returns (ptr, len) as call arguments.
    pub fn s(&mut self, at: u32, s: &str) -> (u64, u64) {
        self.put(at, s.as_bytes());
        (u64::from(at), s.len() as u64)
    }

    /// path_open with every right; Ok(fd) or Err(errno).
    pub fn open(&mut self, dir: u32, path: &str, oflags: u16, fdflags: u16) -> Result<u32, u16> {
        self.open_with(dir, 1, path, oflags, ALL, fdflags)
    }

    /// path_open a file read-only or a directory (no FD_WRITE right).
    pub fn open_ro(&mut self, dir: u32, path: &str, oflags: u16) -> Result<u32, u16> {
        self.open_with(dir, 1, path, oflags, ALL & !rights::FD_WRITE, 0)
    }

    pub fn open_with(
        &mut self,
        dir: u32,
        dirflags: u32,
        path: &str,
        oflags: u16,
        base: u64,
        fdflags: u16,
    ) -> Result<u32, u16> {
        let (p, l) = self.s(P1, path);
        let e = self.e(
            "path_open",
            &[
                u64::from(dir),
                u64::from(dirflags),
                p,
                l,
                u64::from(oflags),
                base,
                ALL,
                u64::from(fdflags),
                u64::from(OUT),
            ],
        );
        if e == 0 { Ok(self.u32(OUT)) } else { Err(e) }
    }

    /// fd_write of `data` as two iovecs; Ok(nwritten) or Err(errno), or the stop.
    pub fn write(&mut self, fd: u32, data: &[u8]) -> Result<Result<u32, u16>, Stop> {
        let half = data.len() / 2;
        self.put(BUF, data);
        self.put(IOV, &BUF.to_le_bytes());
        self.put(IOV + 4, &(half as u32).to_le_bytes());
        self.put(IOV + 8, &(BUF + half as u32).to_le_bytes());
        self.put(IOV + 12, &((data.len() - half) as u32).to_le_bytes());
        let e = self.call(
            "fd_write",
            &[u64::from(fd), u64::from(IOV), 2, u64::from(OUT)],
        )?;
        Ok(if e == 0 {
            Ok(self.u32(OUT))
        } else {
            Err(e as u16)
        })
    }

    pub fn write_ok(&mut self, fd: u32, data: &[u8]) {
        assert_eq!(self.write(fd, data), Ok(Ok(data.len() as u32)));
    }

    /// fd_read of up to `n` bytes into one iovec.
    pub fn read(&mut self, fd: u32, n: u32) -> Result<Vec<u8>, u16> {
        self.put(IOV, &BUF.to_le_bytes());
        self.put(IOV + 4, &n.to_le_bytes());
        let e = self.e(
            "fd_read",
            &[u64::from(fd), u64::from(IOV), 1, u64::from(OUT)],
        );
        if e != 0 {
            return Err(e);
        }
        let k = self.u32(OUT) as usize;
        Ok(self.get(BUF, k))
    }

    /// The 64-byte filestat of a path (following links if `follow`).
    pub fn stat(&mut self, dir: u32, path: &str, follow: bool) -> Result<Vec<u8>, u16> {
        let (p, l) = self.s(P1, path);
        let e = self.e(
            "path_filestat_get",
            &[u64::from(dir), u64::from(follow), p, l, u64::from(BUF)],
        );
        if e == 0 {
            Ok(self.get(BUF, 64))
        } else {
            Err(e)
        }
    }

    pub fn fstat(&mut self, fd: u32) -> Vec<u8> {
        self.ok("fd_filestat_get", &[u64::from(fd), u64::from(BUF)]);
        self.get(BUF, 64)
    }

    /// A one-path call (`path_create_directory`, `path_unlink_file`, ...) on `dir`.
    pub fn p(&mut self, name: &str, dir: u32, path: &str) -> u16 {
        let (p, l) = self.s(P1, path);
        self.e(name, &[u64::from(dir), p, l])
    }

    pub fn rename(&mut self, from: &str, to: &str) -> u16 {
        let (a, al) = self.s(P1, from);
        let (b, bl) = self.s(P2, to);
        self.e(
            "path_rename",
            &[u64::from(ROOT), a, al, u64::from(ROOT), b, bl],
        )
    }

    pub fn symlink(&mut self, target: &str, at: &str) -> u16 {
        let (a, al) = self.s(P1, target);
        let (b, bl) = self.s(P2, at);
        self.e("path_symlink", &[a, al, u64::from(ROOT), b, bl])
    }

    /// fd_readdir from `cookie` into a buffer of `len` bytes: the bytes used.
    pub fn readdir_raw(&mut self, fd: u32, cookie: u64, len: u32) -> Vec<u8> {
        self.ok(
            "fd_readdir",
            &[
                u64::from(fd),
                u64::from(BUF),
                u64::from(len),
                cookie,
                u64::from(OUT),
            ],
        );
        let used = self.u32(OUT) as usize;
        self.get(BUF, used)
    }

    /// Every entry of a directory as (d_next, d_ino, name, d_type).
    pub fn readdir(&mut self, fd: u32) -> Vec<(u64, u64, String, u8)> {
        parse_dirents(&self.readdir_raw(fd, 0, BUF_LEN))
    }

    pub fn file_size(&mut self, path: &str) -> u64 {
        let st = self.stat(ROOT, path, false).unwrap();
        u64::from_le_bytes(st[32..40].try_into().unwrap())
    }
}

pub fn parse_dirents(mut b: &[u8]) -> Vec<(u64, u64, String, u8)> {
    let mut out = Vec::new();
    while b.len() >= 24 {
        let next = u64::from_le_bytes(b[0..8].try_into().unwrap());
        let ino = u64::from_le_bytes(b[8..16].try_into().unwrap());
        let n = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        let t = b[20];
        let name = String::from_utf8_lossy(&b[24..(24 + n).min(b.len())]).into_owned();
        out.push((next, ino, name, t));
        b = &b[(24 + n).min(b.len())..];
    }
    out
}

pub fn field(st: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(st[at..at + 8].try_into().unwrap())
}
