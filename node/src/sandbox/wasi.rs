//! The deterministic WASI preview 1 world a task sees: fixed clocks, a seeded
//! random stream whose algorithm we own, capped output pipes, no files, no
//! sockets, no environment, and a `poll_oneoff` that never sleeps.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use super::TaskState;

/// What the task's wall clock always reads: 2001-09-09T01:46:40Z (UNIX 10^9 s).
pub const FIXED_WALL_CLOCK: Duration = Duration::from_secs(1_000_000_000);
/// What the task's monotonic clock always reads, in nanoseconds.
pub const FIXED_MONOTONIC_NS: u64 = 0;
/// Fuel charged per 8 bytes of `random_get` (host work the guest asks for).
const RANDOM_FUEL_PER_8_BYTES: u64 = 1;

/// WASI errno values used by our own imports.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// A deterministic random stream: xoshiro256** seeded through SplitMix64.
///
/// A task's `random_get` reads this stream (seeded with the task's seed); its
/// algorithm is fixed here so that the bytes never change under a dependency
/// upgrade. Bytes are the little-endian bytes of successive 64-bit outputs; a
/// fill that ends inside a word drops the rest of that word. A task's
/// `random_get` reads stream 0 of its seed: `DeterministicRng::new(seed, 0)`.
#[derive(Clone, Debug)]
pub struct DeterministicRng {
    s: [u64; 4],
}

impl DeterministicRng {
    /// The stream for `seed`; `stream` separates independent streams of one seed.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut s = [0u64; 4];
        for w in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *w = z ^ (z >> 31);
        }
        DeterministicRng { s }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Fills `buf` from the stream.
    pub fn fill_bytes(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let w = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

impl rand_core::TryRng for DeterministicRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill_bytes(dst);
        Ok(())
    }
}

/// Stream ids of [`DeterministicRng::new`] for the task's two WASI generators.
pub(crate) const STREAM_RANDOM_GET: u64 = 0;
const STREAM_INSECURE: u64 = 1;

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        FIXED_MONOTONIC_NS
    }
}

/// An in-memory output pipe with a hard cap. A write that would pass the cap
/// writes nothing, sets the overflow flag and traps the task, so the task ends
/// with `OutputTooLarge` at the same byte on every node.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<PipeInner>,
}

struct PipeInner {
    cap: usize,
    buf: Mutex<Vec<u8>>,
    overflowed: AtomicBool,
}

/// Returned (as a trap) when a write passes the output cap.
#[derive(Debug, thiserror::Error)]
#[error("output over its cap of {0} bytes")]
pub(crate) struct OutputCapExceeded(usize);

impl CappedPipe {
    pub(crate) fn new(cap: u64) -> Self {
        CappedPipe {
            inner: Arc::new(PipeInner {
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                buf: Mutex::new(Vec::new()),
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        match self.inner.buf.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl CappedPipe {
    fn append(&self, bytes: &[u8]) -> Result<(), OutputCapExceeded> {
        let mut buf = match self.inner.buf.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if bytes.len() > self.inner.cap.saturating_sub(buf.len()) {
            self.inner.overflowed.store(true, Ordering::Relaxed);
            return Err(OutputCapExceeded(self.inner.cap));
        }
        buf.extend_from_slice(bytes);
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Always "ready" for a full chunk: the cap is enforced in `write`, so the
        // overflow is a trap at a fixed byte rather than a short write.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The WASI context of one task: stdin from memory, capped stdout/stderr, argv,
/// fixed clocks, seeded randomness; no environment, no preopens, no network.
pub(crate) fn context(
    input: Vec<u8>,
    args: &[String],
    seed: u64,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
) -> WasiP1Ctx {
    let mut b = WasiCtxBuilder::new();
    b.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(input))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .args(args)
        .wall_clock(FixedWallClock)
        .monotonic_clock(FixedMonotonicClock)
        .secure_random(DeterministicRng::new(seed, STREAM_RANDOM_GET))
        .insecure_random(DeterministicRng::new(seed, STREAM_INSECURE))
        .insecure_random_seed(u128::from(seed))
        .allow_blocking_current_thread(true);
    b.build_p1()
}

/// Adds WASI preview 1 to `linker`, then replaces the imports whose behaviour
/// we must own: `random_get` (our stream, charged in fuel), `poll_oneoff`
/// (virtual time: every subscription is ready at once, so a task cannot park a
/// slot in a host-side sleep that epoch interruption cannot reach) and
/// `proc_exit` (every exit code is the task's, none is a host error).
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut TaskState| &mut s.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut caller: Caller<'_, TaskState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
            if caller.data().metered {
                let cost = (len as u64).div_ceil(8) * RANDOM_FUEL_PER_8_BYTES;
                let fuel = caller.get_fuel()?;
                if fuel < cost {
                    caller.set_fuel(0)?;
                    return Err(wasmtime::Error::new(wasmtime::Trap::OutOfFuel));
                }
                caller.set_fuel(fuel - cost)?;
            }
            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                return Ok(ERRNO_FAULT);
            };
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let Some(dst) = ptr.checked_add(len).and_then(|end| data.get_mut(ptr..end)) else {
                return Ok(ERRNO_FAULT);
            };
            state.rng.fill_bytes(dst);
            Ok(ERRNO_SUCCESS)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, TaskState>,
         subs: i32,
         events: i32,
         nsubs: i32,
         nevents_out: i32|
         -> wasmtime::Result<i32> {
            Ok(poll_oneoff(&mut caller, subs, events, nsubs, nevents_out))
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |code: i32| -> wasmtime::Result<()> {
            // Any code, as the task gave it (wasmtime-wasi refuses codes >= 126
            // with an untyped error, which would read as a host failure).
            Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(code)))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// WASI `poll_oneoff` on virtual time: every subscription fires at once, with
/// success and zero bytes for descriptor subscriptions.
fn poll_oneoff(
    caller: &mut Caller<'_, TaskState>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents_out: i32,
) -> i32 {
    const SUB_SIZE: usize = 48;
    const EVENT_SIZE: usize = 32;
    let (subs, events, nsubs, nevents_out) = (
        subs as u32 as usize,
        events as u32 as usize,
        nsubs as u32 as usize,
        nevents_out as u32 as usize,
    );
    if nsubs == 0 {
        return ERRNO_INVAL;
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return ERRNO_FAULT;
    };
    let data = memory.data_mut(caller);
    let in_range =
        |start: usize, len: usize| start.checked_add(len).is_some_and(|e| e <= data.len());
    let (Some(sub_len), Some(ev_len)) =
        (nsubs.checked_mul(SUB_SIZE), nsubs.checked_mul(EVENT_SIZE))
    else {
        return ERRNO_FAULT;
    };
    if !in_range(subs, sub_len) || !in_range(events, ev_len) || !in_range(nevents_out, 4) {
        return ERRNO_FAULT;
    }
    // Read every subscription before writing any event: the regions may overlap.
    let fired: Vec<([u8; 8], u8)> = (0..nsubs)
        .map(|i| {
            let s = subs + i * SUB_SIZE;
            let mut userdata = [0u8; 8];
            userdata.copy_from_slice(&data[s..s + 8]);
            (userdata, data[s + 8])
        })
        .collect();
    for (i, (userdata, tag)) in fired.into_iter().enumerate() {
        let e = events + i * EVENT_SIZE;
        let event = &mut data[e..e + EVENT_SIZE];
        event.fill(0);
        event[..8].copy_from_slice(&userdata);
        // error (u16) stays 0 = success; type is the subscription's tag.
        event[10] = tag;
    }
    data[nevents_out..nevents_out + 4].copy_from_slice(&(nsubs as u32).to_le_bytes());
    ERRNO_SUCCESS
}
