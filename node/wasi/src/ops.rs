//! The imports themselves: the signature table, the one dispatch `match`, and
//! one method per import.

use crate::abi::{
    DIRENT_SIZE, EVENT_SIZE, EVENTRWFLAGS_HANGUP, FDSTAT_SIZE, FILESTAT_SIZE,
    LOOKUPFLAGS_SYMLINK_FOLLOW, PRESTAT_SIZE, SUBCLOCKFLAGS_ABSTIME, SUBSCRIPTION_SIZE, clockid,
    errno, eventtype, fdflags, filetype, fstflags, oflags, rights,
};
use crate::fs::{Bytes, Dir, Kind, MAX_FILE_SIZE, NodeId, Parent};
use crate::mem::Mem;
use crate::{
    FIXED_MONOTONIC_NS, FIXED_WALL_CLOCK_NS, Fail, Fd, FuncSig, Handle, MAX_FDS, R, Stop, ValKind,
    Wasi,
};
use std::collections::BTreeMap;

use ValKind::{I32, I64};

const E: &[ValKind] = &[I32];

macro_rules! sig {
    ($name:literal, [$($p:ident),*]) => {
        FuncSig { name: $name, params: &[$($p),*], results: E }
    };
}

/// The table behind [`Wasi::FUNCS`]; `dispatch` matches on these indices.
pub(crate) const FUNCS: &[FuncSig] = &[
    sig!("args_get", [I32, I32]),
    sig!("args_sizes_get", [I32, I32]),
    sig!("environ_get", [I32, I32]),
    sig!("environ_sizes_get", [I32, I32]),
    sig!("clock_res_get", [I32, I32]),
    sig!("clock_time_get", [I32, I64, I32]),
    sig!("fd_advise", [I32, I64, I64, I32]),
    sig!("fd_allocate", [I32, I64, I64]),
    sig!("fd_close", [I32]),
    sig!("fd_datasync", [I32]),
    sig!("fd_fdstat_get", [I32, I32]), // 10
    sig!("fd_fdstat_set_flags", [I32, I32]),
    sig!("fd_fdstat_set_rights", [I32, I64, I64]),
    sig!("fd_filestat_get", [I32, I32]),
    sig!("fd_filestat_set_size", [I32, I64]),
    sig!("fd_filestat_set_times", [I32, I64, I64, I32]),
    sig!("fd_pread", [I32, I32, I32, I64, I32]),
    sig!("fd_prestat_get", [I32, I32]),
    sig!("fd_prestat_dir_name", [I32, I32, I32]),
    sig!("fd_pwrite", [I32, I32, I32, I64, I32]),
    sig!("fd_read", [I32, I32, I32, I32]), // 20
    sig!("fd_readdir", [I32, I32, I32, I64, I32]),
    sig!("fd_renumber", [I32, I32]),
    sig!("fd_seek", [I32, I64, I32, I32]),
    sig!("fd_sync", [I32]),
    sig!("fd_tell", [I32, I32]),
    sig!("fd_write", [I32, I32, I32, I32]),
    sig!("path_create_directory", [I32, I32, I32]),
    sig!("path_filestat_get", [I32, I32, I32, I32, I32]),
    sig!(
        "path_filestat_set_times",
        [I32, I32, I32, I32, I64, I64, I32]
    ),
    sig!("path_link", [I32, I32, I32, I32, I32, I32, I32]), // 30
    sig!("path_open", [I32, I32, I32, I32, I32, I64, I64, I32, I32]),
    sig!("path_readlink", [I32, I32, I32, I32, I32, I32]),
    sig!("path_remove_directory", [I32, I32, I32]),
    sig!("path_rename", [I32, I32, I32, I32, I32, I32]),
    sig!("path_symlink", [I32, I32, I32, I32, I32]),
    sig!("path_unlink_file", [I32, I32, I32]),
    sig!("poll_oneoff", [I32, I32, I32, I32]),
    FuncSig {
        name: "proc_exit",
        params: &[I32],
        results: &[],
    },
    sig!("proc_raise", [I32]),
    sig!("sched_yield", []), // 40
    sig!("random_get", [I32, I32]),
    sig!("sock_accept", [I32, I32, I32]),
    sig!("sock_recv", [I32, I32, I32, I32, I32, I32]),
    sig!("sock_send", [I32, I32, I32, I32, I32]),
    sig!("sock_shutdown", [I32, I32]),
];

fn err<T>(e: u16) -> R<T> {
    Err(Fail::Errno(e))
}

/// An `i32` argument: the low 32 bits.
fn a32(v: u64) -> u32 {
    v as u32
}

impl Wasi {
    pub(crate) fn dispatch(&mut self, m: &mut Mem, index: usize, a: &[u64]) -> R<()> {
        let w = |i: usize| a32(a[i]);
        match index {
            0 => self.args_get(m, w(0), w(1)),
            1 => self.args_sizes_get(m, w(0), w(1)),
            2 => self.environ_get(m, w(0), w(1)),
            3 => self.environ_sizes_get(m, w(0), w(1)),
            4 => clock_res_get(m, w(0), w(1)),
            5 => clock_time_get(m, w(0), w(2)),
            6 => self.fd_advise(w(0), a[1], a[2], w(3)),
            7 => self.fd_allocate(w(0), a[1], a[2]),
            8 => self.fd_close(w(0)),
            9 | 24 => self.fd(w(0)).map(|_| ()),
            10 => self.fd_fdstat_get(m, w(0), w(1)),
            11 => self.fd_fdstat_set_flags(w(0), w(1)),
            12 => self.fd_fdstat_set_rights(w(0), a[1], a[2]),
            13 => self.fd_filestat_get(m, w(0), w(1)),
            14 => self.fd_filestat_set_size(w(0), a[1]),
            15 => self.fd_filestat_set_times(w(0), a[1], a[2], w(3)),
            16 => self.fd_pread(m, w(0), w(1), w(2), a[3], w(4)),
            17 => self.fd_prestat_get(m, w(0), w(1)),
            18 => self.fd_prestat_dir_name(m, w(0), w(1), w(2)),
            19 => self.fd_pwrite(m, w(0), w(1), w(2), a[3], w(4)),
            20 => self.fd_read(m, w(0), w(1), w(2), w(3)),
            21 => self.fd_readdir(m, w(0), w(1), w(2), a[3], w(4)),
            22 => self.fd_renumber(w(0), w(1)),
            23 => self.fd_seek(m, w(0), a[1], w(2), w(3)),
            25 => self.fd_tell(m, w(0), w(1)),
            26 => self.fd_write(m, w(0), w(1), w(2), w(3)),
            27 => self.path_create_directory(m, w(0), w(1), w(2)),
            28 => self.path_filestat_get(m, w(0), w(1), w(2), w(3), w(4)),
            29 => self.path_filestat_set_times(m, w(0), w(1), w(2), w(3), a[4], a[5], w(6)),
            30 => self.path_link(m, w(0), w(1), w(2), w(3), w(4), w(5), w(6)),
            31 => {
                let p = OpenArgs {
                    dirfd: w(0),
                    dirflags: w(1),
                    path: (w(2), w(3)),
                    oflags: w(4),
                    base: a[5],
                    inheriting: a[6],
                    fdflags: w(7),
                    out: w(8),
                };
                self.path_open(m, p)
            }
            32 => self.path_readlink(m, w(0), w(1), w(2), w(3), w(4), w(5)),
            33 => self.path_remove_directory(m, w(0), w(1), w(2)),
            34 => self.path_rename(m, w(0), w(1), w(2), w(3), w(4), w(5)),
            35 => self.path_symlink(m, w(0), w(1), w(2), w(3), w(4)),
            36 => self.path_unlink_file(m, w(0), w(1), w(2)),
            37 => self.poll_oneoff(m, w(0), w(1), w(2), w(3)),
            38 => Err(Fail::Stop(Stop::Exit(w(0)))),
            39 => err(errno::NOSYS),
            40 => Ok(()),
            41 => self.random_get(m, w(0), w(1)),
            42..=45 => self.sock(w(0)),
            _ => Err(Fail::Stop(Stop::BadCall { index })),
        }
    }

    // ---- args and environment -------------------------------------------

    fn strings_get(&mut self, m: &mut Mem, ptrs: u32, buf: u32, items: &[Vec<u8>]) -> R<()> {
        let total: u64 = items.iter().map(|s| s.len() as u64 + 1).sum();
        m.check(ptrs, items.len() as u64 * 4)?;
        m.check(buf, total)?;
        // Every address below lies inside the checked ranges, so fits in u32.
        let mut at = u64::from(buf);
        for (i, s) in items.iter().enumerate() {
            m.put_u32(ptrs + i as u32 * 4, at as u32)?;
            m.write(at as u32, s)?;
            m.write((at + s.len() as u64) as u32, &[0])?;
            at += s.len() as u64 + 1;
        }
        self.charge_bytes(total + items.len() as u64 * 4);
        Ok(())
    }

    fn sizes_get(m: &mut Mem, count_ptr: u32, size_ptr: u32, items: &[Vec<u8>]) -> R<()> {
        let total: u64 = items.iter().map(|s| s.len() as u64 + 1).sum();
        m.check(count_ptr, 4)?;
        m.check(size_ptr, 4)?;
        m.put_u32(count_ptr, items.len() as u32)?;
        m.put_u32(size_ptr, total as u32)
    }

    fn arg_bytes(&self) -> Vec<Vec<u8>> {
        self.args.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn env_bytes(&self) -> Vec<Vec<u8>> {
        self.env
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect()
    }

    fn args_get(&mut self, m: &mut Mem, argv: u32, buf: u32) -> R<()> {
        let items = self.arg_bytes();
        self.strings_get(m, argv, buf, &items)
    }

    fn args_sizes_get(&mut self, m: &mut Mem, count: u32, size: u32) -> R<()> {
        Self::sizes_get(m, count, size, &self.arg_bytes())
    }

    fn environ_get(&mut self, m: &mut Mem, environ: u32, buf: u32) -> R<()> {
        let items = self.env_bytes();
        self.strings_get(m, environ, buf, &items)
    }

    fn environ_sizes_get(&mut self, m: &mut Mem, count: u32, size: u32) -> R<()> {
        Self::sizes_get(m, count, size, &self.env_bytes())
    }

    // ---- descriptors ----------------------------------------------------

    pub(crate) fn fd(&self, fd: u32) -> R<&Fd> {
        self.fds.get(&fd).ok_or(Fail::Errno(errno::BADF))
    }

    fn fd_mut(&mut self, fd: u32) -> R<&mut Fd> {
        self.fds.get_mut(&fd).ok_or(Fail::Errno(errno::BADF))
    }

    /// The node of a directory descriptor: `EBADF` if none, `ENOTDIR` if not a directory.
    fn dir_fd(&self, fd: u32) -> R<NodeId> {
        match &self.fd(fd)?.handle {
            Handle::Dir { node, .. } => Ok(*node),
            _ => err(errno::NOTDIR),
        }
    }

    /// The node of a regular-file descriptor: `EISDIR` on a directory,
    /// `ESPIPE` on a standard stream.
    fn file_fd(&self, fd: u32) -> R<NodeId> {
        match &self.fd(fd)?.handle {
            Handle::File { node, .. } => Ok(*node),
            Handle::Dir { .. } => err(errno::ISDIR),
            _ => err(errno::SPIPE),
        }
    }

    fn need(&self, fd: u32, right: u64) -> R<()> {
        if self.fd(fd)?.base & right == 0 {
            return err(errno::BADF);
        }
        Ok(())
    }

    fn file_len(&self, node: NodeId) -> u64 {
        match &self.fs.get(node).kind {
            Kind::File(b) => b.as_slice().len() as u64,
            _ => 0,
        }
    }

    fn fd_advise(&mut self, fd: u32, offset: u64, len: u64, advice: u32) -> R<()> {
        self.file_fd(fd)?;
        if advice > 5 || offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return err(errno::INVAL);
        }
        Ok(())
    }

    fn fd_allocate(&mut self, fd: u32, offset: u64, len: u64) -> R<()> {
        let node = self.file_fd(fd)?;
        self.need(fd, rights::FD_WRITE)?;
        let end = offset.checked_add(len).ok_or(Fail::Errno(errno::INVAL))?;
        if end > i64::MAX as u64 {
            return err(errno::INVAL);
        }
        let cur = self.file_len(node);
        if end > cur {
            self.set_len(node, end)?;
        }
        Ok(())
    }

    fn set_len(&mut self, node: NodeId, len: u64) -> R<()> {
        let cur = self.file_len(node);
        let copied = self.fs.modify(node, len, |v| v.resize(len as usize, 0))?;
        self.charge_bytes(copied + len.saturating_sub(cur));
        Ok(())
    }

    fn fd_close(&mut self, fd: u32) -> R<()> {
        let f = self.fds.remove(&fd).ok_or(Fail::Errno(errno::BADF))?;
        self.release(&f.handle);
        Ok(())
    }

    fn release(&mut self, h: &Handle) {
        if let Handle::File { node, .. } | Handle::Dir { node, .. } = h {
            let n = self.fs.get_mut(*node);
            n.opens -= 1;
            self.fs.maybe_free(*node);
        }
    }

    fn filetype_of(&self, h: &Handle) -> u8 {
        match h {
            Handle::Stdin | Handle::Stdout | Handle::Stderr => filetype::UNKNOWN,
            Handle::File { .. } => filetype::REGULAR_FILE,
            Handle::Dir { .. } => filetype::DIRECTORY,
        }
    }

    fn fd_fdstat_get(&mut self, m: &mut Mem, fd: u32, out: u32) -> R<()> {
        let f = self.fd(fd)?;
        let mut b = [0u8; FDSTAT_SIZE as usize];
        b[0] = self.filetype_of(&f.handle);
        b[2..4].copy_from_slice(&f.flags.to_le_bytes());
        b[8..16].copy_from_slice(&f.base.to_le_bytes());
        b[16..24].copy_from_slice(&f.inheriting.to_le_bytes());
        m.write(out, &b)
    }

    fn fd_fdstat_set_flags(&mut self, fd: u32, flags: u32) -> R<()> {
        let f = self.fd_mut(fd)?;
        if flags & !u32::from(fdflags::ALL) != 0 {
            return err(errno::INVAL);
        }
        f.flags = flags as u16;
        Ok(())
    }

    fn fd_fdstat_set_rights(&mut self, fd: u32, base: u64, inheriting: u64) -> R<()> {
        let f = self.fd_mut(fd)?;
        if base & !f.base != 0 || inheriting & !f.inheriting != 0 {
            return err(errno::NOTCAPABLE);
        }
        f.base = base;
        f.inheriting = inheriting;
        Ok(())
    }

    /// The filestat bytes of `node`; a directory's subdirectories are counted
    /// for its nlink, and charged as work.
    fn filestat(&mut self, node: NodeId) -> [u8; FILESTAT_SIZE as usize] {
        let entries = self
            .fs
            .get(node)
            .dir()
            .map_or(0, |d| d.entries.len() as u64);
        self.charge_bytes(entries * 8);
        let n = self.fs.get(node);
        let (ft, nlink, size) = match &n.kind {
            Kind::File(b) => (filetype::REGULAR_FILE, n.links, b.as_slice().len() as u64),
            Kind::Dir(d) => {
                let subdirs = d
                    .entries
                    .values()
                    .filter(|&&c| self.fs.get(c).is_dir())
                    .count() as u64;
                (
                    filetype::DIRECTORY,
                    if n.links == 0 { 0 } else { 2 + subdirs },
                    0,
                )
            }
            Kind::Symlink(t) => (filetype::SYMBOLIC_LINK, n.links, t.len() as u64),
        };
        let mut b = [0u8; FILESTAT_SIZE as usize];
        b[0..8].copy_from_slice(&n.dev.to_le_bytes());
        b[8..16].copy_from_slice(&n.ino.to_le_bytes());
        b[16] = ft;
        b[24..32].copy_from_slice(&nlink.to_le_bytes());
        b[32..40].copy_from_slice(&size.to_le_bytes());
        b[40..48].copy_from_slice(&n.atim.to_le_bytes());
        b[48..56].copy_from_slice(&n.mtim.to_le_bytes());
        b[56..64].copy_from_slice(&FIXED_WALL_CLOCK_NS.to_le_bytes());
        b
    }

    fn fd_filestat_get(&mut self, m: &mut Mem, fd: u32, out: u32) -> R<()> {
        let b = match self.fd(fd)?.handle.clone() {
            Handle::File { node, .. } | Handle::Dir { node, .. } => self.filestat(node),
            h => {
                let mut b = [0u8; FILESTAT_SIZE as usize];
                b[16] = self.filetype_of(&h);
                b
            }
        };
        m.write(out, &b)
    }

    fn fd_filestat_set_size(&mut self, fd: u32, size: u64) -> R<()> {
        let node = match self.file_fd(fd) {
            Err(Fail::Errno(errno::SPIPE)) => return err(errno::INVAL),
            r => r?,
        };
        self.need(fd, rights::FD_WRITE)?;
        if size > i64::MAX as u64 {
            return err(errno::INVAL);
        }
        self.set_len(node, size)
    }

    fn set_times(&mut self, node: NodeId, atim: u64, mtim: u64, flags: u32) -> R<()> {
        let (a, an, mm, mn) = (
            u32::from(fstflags::ATIM),
            u32::from(fstflags::ATIM_NOW),
            u32::from(fstflags::MTIM),
            u32::from(fstflags::MTIM_NOW),
        );
        if flags & !(a | an | mm | mn) != 0
            || flags & (a | an) == a | an
            || flags & (mm | mn) == mm | mn
        {
            return err(errno::INVAL);
        }
        let n = self.fs.get_mut(node);
        if flags & a != 0 {
            n.atim = atim;
        }
        if flags & an != 0 {
            n.atim = FIXED_WALL_CLOCK_NS;
        }
        if flags & mm != 0 {
            n.mtim = mtim;
        }
        if flags & mn != 0 {
            n.mtim = FIXED_WALL_CLOCK_NS;
        }
        Ok(())
    }

    fn fd_filestat_set_times(&mut self, fd: u32, atim: u64, mtim: u64, flags: u32) -> R<()> {
        match self.fd(fd)?.handle.clone() {
            Handle::File { node, .. } | Handle::Dir { node, .. } => {
                self.set_times(node, atim, mtim, flags)
            }
            _ => Ok(()),
        }
    }

    fn fd_pread(&mut self, m: &mut Mem, fd: u32, iovs: u32, n: u32, off: u64, out: u32) -> R<()> {
        let node = self.file_fd(fd)?;
        self.need(fd, rights::FD_READ)?;
        let iovs = m.iovecs(iovs, n)?;
        m.check(out, 4)?;
        if off > i64::MAX as u64 {
            return err(errno::INVAL);
        }
        let k = self.read_at(m, node, &iovs, off)?;
        m.put_u32(out, k as u32)
    }

    fn read_at(&mut self, m: &mut Mem, node: NodeId, iovs: &[(u32, u32)], off: u64) -> R<usize> {
        let k = match &self.fs.get(node).kind {
            Kind::File(b) => {
                let data = b.as_slice();
                let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
                m.scatter(iovs, &data[start..])?
            }
            _ => 0,
        };
        self.charge_bytes(k as u64);
        Ok(k)
    }

    fn write_at(&mut self, node: NodeId, off: u64, data: &[u8]) -> R<()> {
        let cur = self.file_len(node);
        let end = off
            .checked_add(data.len() as u64)
            .ok_or(Fail::Errno(errno::FBIG))?;
        if end > MAX_FILE_SIZE {
            return err(errno::FBIG);
        }
        let new_len = cur.max(end);
        let copied = self.fs.modify(node, new_len, |v| {
            if (v.len() as u64) < end {
                v.resize(end as usize, 0);
            }
            v[off as usize..end as usize].copy_from_slice(data);
        })?;
        self.charge_bytes(copied + data.len() as u64 + new_len.saturating_sub(cur.max(off)));
        Ok(())
    }

    fn fd_pwrite(&mut self, m: &mut Mem, fd: u32, iovs: u32, n: u32, off: u64, out: u32) -> R<()> {
        let node = self.file_fd(fd)?;
        self.need(fd, rights::FD_WRITE)?;
        let iovs = m.iovecs(iovs, n)?;
        m.check(out, 4)?;
        if off > i64::MAX as u64 {
            return err(errno::INVAL);
        }
        let data = m.gather(&iovs)?;
        self.write_at(node, off, &data)?;
        m.put_u32(out, data.len() as u32)
    }

    fn fd_read(&mut self, m: &mut Mem, fd: u32, iovs: u32, n: u32, out: u32) -> R<()> {
        let handle = self.fd(fd)?.handle.clone();
        match handle {
            Handle::Dir { .. } => return err(errno::ISDIR),
            Handle::Stdout | Handle::Stderr => return err(errno::BADF),
            _ => {}
        }
        self.need(fd, rights::FD_READ)?;
        let iovs = m.iovecs(iovs, n)?;
        m.check(out, 4)?;
        let k = match handle {
            Handle::Stdin => {
                let k = m.scatter(&iovs, &self.stdin[self.stdin_pos..])?;
                self.stdin_pos += k;
                self.charge_bytes(k as u64);
                k
            }
            Handle::File { node, pos } => {
                let k = self.read_at(m, node, &iovs, pos)?;
                if let Ok(Fd {
                    handle: Handle::File { pos, .. },
                    ..
                }) = self.fd_mut(fd)
                {
                    *pos += k as u64;
                }
                k
            }
            _ => 0,
        };
        m.put_u32(out, k as u32)
    }

    fn fd_write(&mut self, m: &mut Mem, fd: u32, iovs: u32, n: u32, out: u32) -> R<()> {
        let f = self.fd(fd)?;
        let (handle, append) = (f.handle.clone(), f.flags & fdflags::APPEND != 0);
        match handle {
            Handle::Dir { .. } => return err(errno::ISDIR),
            Handle::Stdin => return err(errno::BADF),
            _ => {}
        }
        self.need(fd, rights::FD_WRITE)?;
        let iovs = m.iovecs(iovs, n)?;
        m.check(out, 4)?;
        let data = m.gather(&iovs)?;
        let k = data.len() as u64;
        match handle {
            Handle::Stdout => {
                if self.stdout.len() as u64 + k > self.stdout_cap {
                    return Err(Fail::Stop(Stop::StdoutCap));
                }
                self.stdout.extend_from_slice(&data);
                self.charge_bytes(k);
            }
            Handle::Stderr => {
                if self.stderr.len() as u64 + k > self.stderr_cap {
                    return Err(Fail::Stop(Stop::StderrCap));
                }
                self.stderr.extend_from_slice(&data);
                self.charge_bytes(k);
            }
            Handle::File { node, pos } => {
                let at = if append { self.file_len(node) } else { pos };
                self.write_at(node, at, &data)?;
                if let Ok(Fd {
                    handle: Handle::File { pos, .. },
                    ..
                }) = self.fd_mut(fd)
                {
                    *pos = at + k;
                }
            }
            _ => {}
        }
        m.put_u32(out, k as u32)
    }

    fn fd_prestat_get(&mut self, m: &mut Mem, fd: u32, out: u32) -> R<()> {
        match &self.fd(fd)?.handle {
            Handle::Dir {
                preopen: Some(p), ..
            } => {
                let mut b = [0u8; PRESTAT_SIZE as usize];
                b[4..8].copy_from_slice(&(p.len() as u32).to_le_bytes());
                m.write(out, &b)
            }
            _ => err(errno::BADF),
        }
    }

    fn fd_prestat_dir_name(&mut self, m: &mut Mem, fd: u32, buf: u32, len: u32) -> R<()> {
        match &self.fd(fd)?.handle {
            Handle::Dir {
                preopen: Some(p), ..
            } => {
                if (len as usize) < p.len() {
                    return err(errno::NAMETOOLONG);
                }
                let p = p.clone();
                m.write(buf, p.as_bytes())
            }
            _ => err(errno::BADF),
        }
    }

    fn fd_readdir(
        &mut self,
        m: &mut Mem,
        fd: u32,
        buf: u32,
        len: u32,
        cookie: u64,
        out: u32,
    ) -> R<()> {
        let node = match &self.fd(fd)?.handle {
            Handle::Dir { node, .. } => *node,
            _ => return err(errno::NOTDIR),
        };
        m.check(buf, u64::from(len))?;
        m.check(out, 4)?;
        let n = self.fs.get(node);
        let Some(d) = n.dir() else {
            return err(errno::NOTDIR);
        };
        let parent_ino = if n.links == 0 {
            n.ino
        } else {
            self.fs.get(d.parent).ino
        };
        let mut bytes = Vec::new();
        let entries = [
            (b".".to_vec(), n.ino, filetype::DIRECTORY),
            (b"..".to_vec(), parent_ino, filetype::DIRECTORY),
        ];
        let rest = d.entries.iter().map(|(name, &c)| {
            let cn = self.fs.get(c);
            let ft = match cn.kind {
                Kind::File(_) => filetype::REGULAR_FILE,
                Kind::Dir(_) => filetype::DIRECTORY,
                Kind::Symlink(_) => filetype::SYMBOLIC_LINK,
            };
            (name.clone(), cn.ino, ft)
        });
        let start = usize::try_from(cookie).unwrap_or(usize::MAX);
        let mut visited = 0u64;
        for (i, (name, ino, ft)) in entries.into_iter().chain(rest).enumerate() {
            visited += 1;
            if i < start {
                continue;
            }
            if bytes.len() >= len as usize {
                break;
            }
            let mut h = [0u8; DIRENT_SIZE as usize];
            h[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            h[8..16].copy_from_slice(&ino.to_le_bytes());
            h[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            h[20] = ft;
            bytes.extend_from_slice(&h);
            bytes.extend_from_slice(&name);
        }
        bytes.truncate(len as usize);
        // Entries skipped to reach the cookie are host work too.
        self.charge_bytes(bytes.len() as u64 + visited * 8);
        m.write(buf, &bytes)?;
        m.put_u32(out, bytes.len() as u32)
    }

    fn fd_renumber(&mut self, from: u32, to: u32) -> R<()> {
        self.fd(from)?;
        self.fd(to)?;
        if from == to {
            return Ok(());
        }
        let f = self.fds.remove(&from).ok_or(Fail::Errno(errno::BADF))?;
        if let Some(old) = self.fds.insert(to, f) {
            self.release(&old.handle);
        }
        Ok(())
    }

    fn fd_seek(&mut self, m: &mut Mem, fd: u32, offset: u64, whence: u32, out: u32) -> R<()> {
        let node = match &self.fd(fd)?.handle {
            Handle::File { node, .. } => *node,
            Handle::Dir { .. } => return err(errno::BADF),
            _ => return err(errno::SPIPE),
        };
        m.check(out, 8)?;
        let base = match whence {
            0 => 0,
            1 => match &self.fd(fd)?.handle {
                Handle::File { pos, .. } => *pos,
                _ => 0,
            },
            2 => self.file_len(node),
            _ => return err(errno::INVAL),
        };
        let new = i128::from(base) + i128::from(offset as i64);
        if !(0..=i128::from(i64::MAX)).contains(&new) {
            return err(errno::INVAL);
        }
        let new = new as u64;
        if let Ok(Fd {
            handle: Handle::File { pos, .. },
            ..
        }) = self.fd_mut(fd)
        {
            *pos = new;
        }
        m.put_u64(out, new)
    }

    fn fd_tell(&mut self, m: &mut Mem, fd: u32, out: u32) -> R<()> {
        match &self.fd(fd)?.handle {
            Handle::File { pos, .. } => {
                let pos = *pos;
                m.put_u64(out, pos)
            }
            Handle::Dir { .. } => err(errno::BADF),
            _ => err(errno::SPIPE),
        }
    }

    // ---- paths ----------------------------------------------------------

    /// The directory node of `fd` and the guest path at `ptr, len`.
    fn at(&mut self, m: &Mem, fd: u32, ptr: u32, len: u32) -> R<(NodeId, Vec<u8>)> {
        let dir = self.dir_fd(fd)?;
        let path = m.path(ptr, len)?;
        self.charge_bytes(path.len() as u64);
        Ok((dir, path))
    }

    fn path_create_directory(&mut self, m: &mut Mem, fd: u32, ptr: u32, len: u32) -> R<()> {
        let (dir, path) = self.at(m, fd, ptr, len)?;
        let p = self.fs.resolve_parent(dir, &path)?;
        if p.is_dot() || self.fs.lookup(p.dir, &p.name).is_some() {
            return err(errno::EXIST);
        }
        self.check_live_dir(p.dir)?;
        self.fs.create(
            p.dir,
            &p.name,
            Kind::Dir(Dir {
                entries: BTreeMap::new(),
                parent: p.dir,
                names_len: 0,
            }),
        )?;
        Ok(())
    }

    /// `ENOENT` for a directory that was removed while open.
    fn check_live_dir(&self, dir: NodeId) -> R<()> {
        if self.fs.get(dir).links == 0 {
            return err(errno::NOENT);
        }
        Ok(())
    }

    fn path_filestat_get(
        &mut self,
        m: &mut Mem,
        fd: u32,
        flags: u32,
        ptr: u32,
        len: u32,
        out: u32,
    ) -> R<()> {
        let (dir, path) = self.at(m, fd, ptr, len)?;
        m.check(out, u64::from(FILESTAT_SIZE))?;
        let node = self
            .fs
            .resolve(dir, &path, flags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0)?;
        let b = self.filestat(node);
        m.write(out, &b)
    }

    #[allow(clippy::too_many_arguments)]
    fn path_filestat_set_times(
        &mut self,
        m: &mut Mem,
        fd: u32,
        flags: u32,
        ptr: u32,
        len: u32,
        atim: u64,
        mtim: u64,
        fst: u32,
    ) -> R<()> {
        let (dir, path) = self.at(m, fd, ptr, len)?;
        let node = self
            .fs
            .resolve(dir, &path, flags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0)?;
        self.set_times(node, atim, mtim, fst)
    }

    /// Refuses a new entry where the last component already exists or is `.`/`..`.
    fn check_new_entry(&self, p: &Parent) -> R<()> {
        if p.is_dot() {
            return err(errno::EXIST);
        }
        match self.fs.lookup(p.dir, &p.name) {
            Some(existing) if p.slash && !self.fs.get(existing).is_dir() => err(errno::NOTDIR),
            Some(_) => err(errno::EXIST),
            None if p.slash => err(errno::NOENT),
            None => self.check_live_dir(p.dir),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn path_link(
        &mut self,
        m: &mut Mem,
        old_fd: u32,
        old_flags: u32,
        old_ptr: u32,
        old_len: u32,
        new_fd: u32,
        new_ptr: u32,
        new_len: u32,
    ) -> R<()> {
        let (old_dir, old_path) = self.at(m, old_fd, old_ptr, old_len)?;
        let (new_dir, new_path) = self.at(m, new_fd, new_ptr, new_len)?;
        let src = self.fs.resolve(
            old_dir,
            &old_path,
            old_flags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0,
        )?;
        let p = self.fs.resolve_parent(new_dir, &new_path)?;
        self.check_new_entry(&p)?;
        if self.fs.get(src).is_dir() {
            return err(errno::PERM);
        }
        if self.fs.get(src).dev != self.fs.get(p.dir).dev {
            return err(errno::XDEV);
        }
        self.fs.link(p.dir, &p.name, Some(src))?;
        self.fs.get_mut(src).links += 1;
        Ok(())
    }

    fn new_fd(&mut self, f: Fd) -> R<u32> {
        if self.fds.len() >= MAX_FDS {
            return err(errno::MFILE);
        }
        let mut n = 0u32;
        for &k in self.fds.keys() {
            if k != n {
                break;
            }
            n += 1;
        }
        self.fds.insert(n, f);
        Ok(n)
    }

    fn path_open(&mut self, m: &mut Mem, a: OpenArgs) -> R<()> {
        let (dir, path) = self.at(m, a.dirfd, a.path.0, a.path.1)?;
        m.check(a.out, 4)?;
        // Before anything is created: a refused open leaves no file behind.
        if self.fds.len() >= MAX_FDS {
            return err(errno::MFILE);
        }
        let follow = a.dirflags & LOOKUPFLAGS_SYMLINK_FOLLOW != 0;
        let of = a.oflags;
        if of & !0xf != 0 || a.fdflags & !u32::from(fdflags::ALL) != 0 {
            return err(errno::INVAL);
        }
        let (creat, directory, excl, trunc) = (
            of & u32::from(oflags::CREAT) != 0,
            of & u32::from(oflags::DIRECTORY) != 0,
            of & u32::from(oflags::EXCL) != 0,
            of & u32::from(oflags::TRUNC) != 0,
        );
        // Truncating through a directory needs its PATH_FILESTAT_SET_SIZE
        // right (a task may drop it with fd_fdstat_set_rights).
        if trunc && self.fd(a.dirfd)?.base & rights::PATH_FILESTAT_SET_SIZE == 0 {
            return err(errno::NOTCAPABLE);
        }
        let node = if creat {
            let p = self.fs.resolve_parent(dir, &path)?;
            let existing = if p.is_dot() {
                Some(self.fs.resolve(p.dir, &p.name, true)?)
            } else {
                self.fs.lookup(p.dir, &p.name)
            };
            match existing {
                Some(_) if excl => return err(errno::EXIST),
                Some(_) => self.fs.resolve(p.dir, &p.name, follow || p.slash)?,
                None => {
                    if directory {
                        return err(errno::INVAL);
                    }
                    if p.slash {
                        return err(errno::ISDIR);
                    }
                    self.check_live_dir(p.dir)?;
                    self.fs
                        .create(p.dir, &p.name, Kind::File(Bytes::Own(Vec::new())))?
                }
            }
        } else {
            self.fs.resolve(dir, &path, follow)?
        };
        let n = self.fs.get(node);
        let wants_write = a.base & rights::FD_WRITE != 0;
        let handle = match &n.kind {
            Kind::Symlink(_) => return err(errno::LOOP),
            Kind::Dir(_) => {
                if wants_write || trunc {
                    return err(errno::ISDIR);
                }
                Handle::Dir {
                    node,
                    preopen: None,
                }
            }
            Kind::File(_) => {
                if directory {
                    return err(errno::NOTDIR);
                }
                Handle::File { node, pos: 0 }
            }
        };
        if self.fds.len() >= MAX_FDS {
            return err(errno::MFILE);
        }
        let is_dir = matches!(handle, Handle::Dir { .. });
        if trunc && self.file_len(node) > 0 {
            self.set_len(node, 0)?;
        } else if trunc {
            // Truncating an empty base file still makes it the task's.
            self.fs.modify(node, 0, |v| v.clear())?;
        }
        let mask = if is_dir { rights::DIR } else { rights::FILE };
        let fd = self.new_fd(Fd {
            handle,
            flags: a.fdflags as u16,
            base: a.base & mask,
            inheriting: a.inheriting & (rights::DIR | rights::FILE),
        })?;
        self.fs.get_mut(node).opens += 1;
        m.put_u32(a.out, fd)
    }

    #[allow(clippy::too_many_arguments)]
    fn path_readlink(
        &mut self,
        m: &mut Mem,
        fd: u32,
        ptr: u32,
        len: u32,
        buf: u32,
        buf_len: u32,
        out: u32,
    ) -> R<()> {
        let (dir, path) = self.at(m, fd, ptr, len)?;
        m.check(buf, u64::from(buf_len))?;
        m.check(out, 4)?;
        let node = self.fs.resolve(dir, &path, false)?;
        let Kind::Symlink(t) = &self.fs.get(node).kind else {
            return err(errno::INVAL);
        };
        let k = t.len().min(buf_len as usize);
        let t = t[..k].to_vec();
        m.write(buf, &t)?;
        self.charge_bytes(k as u64);
        m.put_u32(out, k as u32)
    }

    fn path_remove_directory(&mut self, m: &mut Mem, fd: u32, ptr: u32, len: u32) -> R<()> {
        let (dir, path) = self.at(m, fd, ptr, len)?;
        let p = self.fs.resolve_parent(dir, &path)?;
        if p.name == b"." {
            return err(errno::INVAL);
        }
        if p.name == b".." {
            return err(errno::NOTEMPTY);
        }
        let node = self
            .fs
            .lookup(p.dir, &p.name)
            .ok_or(Fail::Errno(errno::NOENT))?;
        match self.fs.get(node).dir() {
            None => return err(errno::NOTDIR),
            Some(d) if !d.entries.is_empty() => return err(errno::NOTEMPTY),
            Some(_) => {}
        }
        self.fs.unlink(p.dir, &p.name);
        Ok(())
    }

    fn path_unlink_file(&mut self, m: &mut Mem, fd: u32, ptr: u32, len: u32) -> R<()> {
        let (dir, path) = self.at(m, fd, ptr, len)?;
        let p = self.fs.resolve_parent(dir, &path)?;
        if p.is_dot() {
            return err(errno::ISDIR);
        }
        let node = self
            .fs
            .lookup(p.dir, &p.name)
            .ok_or(Fail::Errno(errno::NOENT))?;
        if self.fs.get(node).is_dir() {
            return err(errno::ISDIR);
        }
        if p.slash {
            return err(errno::NOTDIR);
        }
        self.fs.unlink(p.dir, &p.name);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn path_rename(
        &mut self,
        m: &mut Mem,
        fd: u32,
        old_ptr: u32,
        old_len: u32,
        new_fd: u32,
        new_ptr: u32,
        new_len: u32,
    ) -> R<()> {
        let (old_dir, old_path) = self.at(m, fd, old_ptr, old_len)?;
        let (new_dir, new_path) = self.at(m, new_fd, new_ptr, new_len)?;
        let from = self.fs.resolve_parent(old_dir, &old_path)?;
        let to = self.fs.resolve_parent(new_dir, &new_path)?;
        if from.is_dot() || to.is_dot() {
            return err(errno::BUSY);
        }
        let src = self
            .fs
            .lookup(from.dir, &from.name)
            .ok_or(Fail::Errno(errno::NOENT))?;
        let src_dir = self.fs.get(src).is_dir();
        if (from.slash || to.slash) && !src_dir {
            return err(errno::NOTDIR);
        }
        self.check_live_dir(to.dir)?;
        if self.fs.get(src).dev != self.fs.get(to.dir).dev {
            return err(errno::XDEV);
        }
        let dst = self.fs.lookup(to.dir, &to.name);
        if dst == Some(src) {
            return Ok(());
        }
        if let Some(d) = dst {
            match (src_dir, self.fs.get(d).dir()) {
                (true, None) => return err(errno::NOTDIR),
                (true, Some(dd)) if !dd.entries.is_empty() => return err(errno::NOTEMPTY),
                (false, Some(_)) => return err(errno::ISDIR),
                _ => {}
            }
        }
        if src_dir {
            // A directory cannot move into itself or below itself.
            let mut cur = to.dir;
            loop {
                if cur == src {
                    return err(errno::INVAL);
                }
                let Some(d) = self.fs.get(cur).dir() else {
                    break;
                };
                if d.parent == cur {
                    break;
                }
                cur = d.parent;
            }
        }
        // Charge the new name first (the only step that can stop), then move.
        if dst.is_none() {
            self.fs.link(to.dir, &to.name, None)?;
        }
        // Keep the source alive while its old entry goes.
        self.fs.get_mut(src).links += 1;
        self.fs.unlink(from.dir, &from.name);
        // Same name, same charge: the entry now names the source instead.
        if let Some(old) = self.fs.replace_entry(to.dir, &to.name, src) {
            let n = self.fs.get_mut(old);
            n.links = n.links.saturating_sub(1);
            self.fs.maybe_free(old);
        }
        if let Kind::Dir(d) = &mut self.fs.get_mut(src).kind {
            d.parent = to.dir;
        }
        Ok(())
    }

    fn path_symlink(
        &mut self,
        m: &mut Mem,
        old_ptr: u32,
        old_len: u32,
        fd: u32,
        new_ptr: u32,
        new_len: u32,
    ) -> R<()> {
        let target = m.path(old_ptr, old_len)?;
        let (dir, path) = self.at(m, fd, new_ptr, new_len)?;
        if target.is_empty() {
            return err(errno::NOENT);
        }
        if target.contains(&0) {
            return err(errno::INVAL);
        }
        // A link to an absolute path could only ever lead out of the mount.
        if target.first() == Some(&b'/') {
            return err(errno::NOTCAPABLE);
        }
        let p = self.fs.resolve_parent(dir, &path)?;
        self.check_new_entry(&p)?;
        self.fs.create(p.dir, &p.name, Kind::Symlink(target))?;
        Ok(())
    }

    // ---- poll, random, sockets ------------------------------------------

    fn poll_oneoff(&mut self, m: &mut Mem, subs: u32, events: u32, nsubs: u32, out: u32) -> R<()> {
        if nsubs == 0 {
            return err(errno::INVAL);
        }
        let raw = m
            .slice(subs, u64::from(nsubs) * u64::from(SUBSCRIPTION_SIZE))?
            .to_vec();
        m.check(events, u64::from(nsubs) * u64::from(EVENT_SIZE))?;
        m.check(out, 4)?;
        self.charge_bytes(raw.len() as u64);
        // Read every subscription before writing any event: the regions may overlap.
        let mut fd_events = Vec::new();
        let mut clocks = Vec::new();
        for s in raw.chunks_exact(SUBSCRIPTION_SIZE as usize) {
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&s[i..i + 8]);
                u64::from_le_bytes(b)
            };
            let u32_at = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
            let userdata = u64_at(0);
            match s[8] {
                eventtype::CLOCK => {
                    let id = u32_at(16);
                    let timeout = u64_at(24);
                    let flags = u16::from_le_bytes([s[40], s[41]]);
                    let (error, remaining) = match clock_now(id) {
                        None => (errno::INVAL, 0),
                        Some(now) if flags & SUBCLOCKFLAGS_ABSTIME != 0 => {
                            (errno::SUCCESS, timeout.saturating_sub(now))
                        }
                        Some(_) => (errno::SUCCESS, timeout),
                    };
                    clocks.push((userdata, error, remaining));
                }
                t @ (eventtype::FD_READ | eventtype::FD_WRITE) => {
                    let fd = u32_at(16);
                    let (error, nbytes, flags) = self.fd_readiness(fd, t);
                    fd_events.push(Event {
                        userdata,
                        error,
                        kind: t,
                        nbytes,
                        flags,
                    });
                }
                _ => return err(errno::INVAL),
            }
        }
        // Virtual time: descriptors are always ready and time never passes,
        // so the events are the descriptors plus the clocks already due; if
        // none, the clocks due first (time "jumps" to them without moving).
        let mut fired = fd_events;
        let due: Vec<_> = clocks.iter().filter(|c| c.2 == 0 || c.1 != 0).collect();
        let chosen: Vec<_> = if !fired.is_empty() || !due.is_empty() {
            due
        } else {
            let min = clocks.iter().map(|c| c.2).min().unwrap_or(0);
            clocks.iter().filter(|c| c.2 == min).collect()
        };
        // Keep the subscriptions' order: clocks and descriptors interleaved as given.
        let mut order = Vec::new();
        let (mut ci, mut fi) = (0usize, 0usize);
        for s in raw.chunks_exact(SUBSCRIPTION_SIZE as usize) {
            if s[8] == eventtype::CLOCK {
                let c = &clocks[ci];
                ci += 1;
                if chosen.iter().any(|x| std::ptr::eq(*x, c)) {
                    order.push(Event {
                        userdata: c.0,
                        error: c.1,
                        kind: eventtype::CLOCK,
                        nbytes: 0,
                        flags: 0,
                    });
                }
            } else {
                order.push(fired[fi].clone());
                fi += 1;
            }
        }
        fired.clear();
        for (i, e) in order.iter().enumerate() {
            let mut b = [0u8; EVENT_SIZE as usize];
            b[0..8].copy_from_slice(&e.userdata.to_le_bytes());
            b[8..10].copy_from_slice(&e.error.to_le_bytes());
            b[10] = e.kind;
            b[16..24].copy_from_slice(&e.nbytes.to_le_bytes());
            b[24..26].copy_from_slice(&e.flags.to_le_bytes());
            m.write(events + i as u32 * EVENT_SIZE, &b)?;
        }
        m.put_u32(out, order.len() as u32)
    }

    /// (error, nbytes, flags) of an fd_read/fd_write subscription on `fd`.
    fn fd_readiness(&self, fd: u32, kind: u8) -> (u16, u64, u16) {
        let Ok(f) = self.fd(fd) else {
            return (errno::BADF, 0, 0);
        };
        match (&f.handle, kind) {
            (Handle::Stdin, eventtype::FD_READ) => {
                let left = (self.stdin.len() - self.stdin_pos) as u64;
                let flags = if left == 0 { EVENTRWFLAGS_HANGUP } else { 0 };
                (errno::SUCCESS, left, flags)
            }
            (Handle::File { node, pos }, eventtype::FD_READ) => {
                (errno::SUCCESS, self.file_len(*node).saturating_sub(*pos), 0)
            }
            (Handle::Stdout | Handle::Stderr | Handle::File { .. }, eventtype::FD_WRITE) => {
                (errno::SUCCESS, 0, 0)
            }
            _ => (errno::BADF, 0, 0),
        }
    }

    fn random_get(&mut self, m: &mut Mem, buf: u32, len: u32) -> R<()> {
        let dst = m.slice_mut(buf, u64::from(len))?;
        self.rng.fill_bytes(dst);
        self.charge_bytes(u64::from(len));
        Ok(())
    }

    fn sock(&mut self, fd: u32) -> R<()> {
        self.fd(fd)?;
        err(errno::NOTSOCK)
    }
}

#[derive(Clone, Debug)]
struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

pub(crate) struct OpenArgs {
    dirfd: u32,
    dirflags: u32,
    path: (u32, u32),
    oflags: u32,
    base: u64,
    inheriting: u64,
    fdflags: u32,
    out: u32,
}

/// What clock `id` reads, or `None` for an unknown clock.
fn clock_now(id: u32) -> Option<u64> {
    match id {
        clockid::REALTIME => Some(FIXED_WALL_CLOCK_NS),
        clockid::MONOTONIC | clockid::PROCESS_CPUTIME_ID | clockid::THREAD_CPUTIME_ID => {
            Some(FIXED_MONOTONIC_NS)
        }
        _ => None,
    }
}

fn clock_res_get(m: &mut Mem, id: u32, out: u32) -> R<()> {
    clock_now(id).ok_or(Fail::Errno(errno::INVAL))?;
    m.put_u64(out, 1)
}

fn clock_time_get(m: &mut Mem, id: u32, out: u32) -> R<()> {
    let now = clock_now(id).ok_or(Fail::Errno(errno::INVAL))?;
    m.put_u64(out, now)
}
