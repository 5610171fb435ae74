//! Bounds-checked access to guest memory. Every pointer and length comes from
//! the guest: anything outside the slice is `EFAULT`, never a panic.

use crate::abi::errno;
use crate::{Fail, R};

/// Guest linear memory for the length of one call.
pub(crate) struct Mem<'a> {
    bytes: &'a mut [u8],
}

impl<'a> Mem<'a> {
    pub(crate) fn new(bytes: &'a mut [u8]) -> Self {
        Mem { bytes }
    }

    /// The range `ptr..ptr + len`, if it lies inside memory.
    fn range(&self, ptr: u32, len: u64) -> R<std::ops::Range<usize>> {
        let start = u64::from(ptr);
        let end = start.checked_add(len).ok_or(Fail::Errno(errno::FAULT))?;
        if end > self.bytes.len() as u64 {
            return Err(Fail::Errno(errno::FAULT));
        }
        // Both fit in usize: they are at most the slice length.
        Ok(start as usize..end as usize)
    }

    /// Fails with `EFAULT` unless `len` bytes at `ptr` are inside memory.
    pub(crate) fn check(&self, ptr: u32, len: u64) -> R<()> {
        self.range(ptr, len).map(|_| ())
    }

    pub(crate) fn slice(&self, ptr: u32, len: u64) -> R<&[u8]> {
        let r = self.range(ptr, len)?;
        Ok(&self.bytes[r])
    }

    pub(crate) fn slice_mut(&mut self, ptr: u32, len: u64) -> R<&mut [u8]> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.bytes[r])
    }

    pub(crate) fn write(&mut self, ptr: u32, data: &[u8]) -> R<()> {
        self.slice_mut(ptr, data.len() as u64)?
            .copy_from_slice(data);
        Ok(())
    }

    pub(crate) fn put_u32(&mut self, ptr: u32, v: u32) -> R<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    pub(crate) fn put_u64(&mut self, ptr: u32, v: u64) -> R<()> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// The `iovec`/`ciovec` array at `ptr` (`count` entries of 8 bytes: buf
    /// u32, len u32), every buffer checked. `EINVAL` if the lengths sum past u32.
    pub(crate) fn iovecs(&self, ptr: u32, count: u32) -> R<Vec<(u32, u32)>> {
        let raw = self.slice(ptr, u64::from(count) * 8)?;
        let mut out = Vec::with_capacity(count as usize);
        let mut total: u64 = 0;
        for c in raw.chunks_exact(8) {
            let buf = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let len = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            self.check(buf, u64::from(len))?;
            total += u64::from(len);
            if total > u64::from(u32::MAX) {
                return Err(Fail::Errno(errno::INVAL));
            }
            out.push((buf, len));
        }
        Ok(out)
    }

    /// Gathers the bytes of a `ciovec` array.
    pub(crate) fn gather(&self, iovs: &[(u32, u32)]) -> R<Vec<u8>> {
        let total: usize = iovs.iter().map(|&(_, l)| l as usize).sum();
        let mut out = Vec::with_capacity(total);
        for &(buf, len) in iovs {
            out.extend_from_slice(self.slice(buf, u64::from(len))?);
        }
        Ok(out)
    }

    /// Scatters `data` over an `iovec` array, in order; returns bytes written.
    pub(crate) fn scatter(&mut self, iovs: &[(u32, u32)], mut data: &[u8]) -> R<usize> {
        let mut n = 0;
        for &(buf, len) in iovs {
            if data.is_empty() {
                break;
            }
            let k = (len as usize).min(data.len());
            self.write(buf, &data[..k])?;
            data = &data[k..];
            n += k;
        }
        Ok(n)
    }

    /// A guest string (a path): `EFAULT` out of bounds, `EILSEQ` if not UTF-8.
    pub(crate) fn path(&self, ptr: u32, len: u32) -> R<Vec<u8>> {
        let b = self.slice(ptr, u64::from(len))?;
        if std::str::from_utf8(b).is_err() {
            return Err(Fail::Errno(errno::ILSEQ));
        }
        Ok(b.to_vec())
    }
}
