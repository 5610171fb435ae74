//! A link emulator inside the endpoint's own UDP socket: delay, jitter and
//! loss on every datagram this endpoint sends.
//!
//! A testing aid, off by default (`chorus node --emulate-link
//! delay=50ms,jitter=10ms,loss=0.01`). Kernels without `netem` (`tc qdisc …
//! netem` needs `CONFIG_NET_SCH_NETEM`) cannot slow a link down, so the node
//! does it itself: [`EmulatedSocket`] wraps quinn's socket, drops each
//! outgoing datagram with probability `loss`, and holds the rest back for
//! `delay ± jitter` (uniform) before handing them to the real socket. Only the
//! sending side is emulated: two emulating peers see a round trip of about
//! twice the delay, as over two links of that delay. Jitter reorders
//! datagrams, as it does on a real path. The queue of held datagrams is
//! bounded (a router's buffer): past [`QUEUE_LIMIT`] datagrams, new ones are
//! dropped.

use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chorus_core::rng::Rng;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most datagrams held back at once; more are dropped (tail drop).
pub const QUEUE_LIMIT: usize = 16_384;

/// What the emulated link does to each outgoing datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkEmulation {
    /// Fixed one-way delay added to each datagram.
    pub delay: Duration,
    /// Each datagram's delay varies uniformly within `delay ± jitter` (never
    /// below zero).
    pub jitter: Duration,
    /// Probability in [0, 1] that a datagram is dropped.
    pub loss: f64,
}

/// Why a `--emulate-link` value was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinkSpecError {
    /// A part is not `key=value`.
    #[error("`{0}` is not KEY=VALUE (keys: delay, jitter, loss)")]
    NotKeyValue(String),
    /// An unknown key.
    #[error("unknown key `{0}` (keys: delay, jitter, loss)")]
    UnknownKey(String),
    /// A duration that does not parse (`50ms`, `1s`).
    #[error("{key}: `{value}` is not a duration such as 50ms")]
    BadDuration {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// A loss that is not a number in [0, 1].
    #[error("loss: `{0}` is not a probability between 0 and 1")]
    BadLoss(String),
    /// A delay or jitter over a minute: surely a typo.
    #[error("{0} over 60 s is not a link")]
    TooLong(&'static str),
}

impl FromStr for LinkEmulation {
    type Err = LinkSpecError;

    /// Parses `delay=50ms,jitter=10ms,loss=0.01` (any subset, any order).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut link = LinkEmulation::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| LinkSpecError::NotKeyValue(part.to_string()))?;
            let (key, value) = (key.trim(), value.trim());
            let duration = || {
                humantime::parse_duration(value).map_err(|_| LinkSpecError::BadDuration {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            };
            match key {
                "delay" => link.delay = duration()?,
                "jitter" => link.jitter = duration()?,
                "loss" => {
                    link.loss = value
                        .parse::<f64>()
                        .ok()
                        .filter(|l| (0.0..=1.0).contains(l))
                        .ok_or_else(|| LinkSpecError::BadLoss(value.to_string()))?
                }
                other => return Err(LinkSpecError::UnknownKey(other.to_string())),
            }
        }
        let minute = Duration::from_secs(60);
        if link.delay > minute {
            return Err(LinkSpecError::TooLong("delay"));
        }
        if link.jitter > minute {
            return Err(LinkSpecError::TooLong("jitter"));
        }
        Ok(link)
    }
}

impl fmt::Display for LinkEmulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay={}ms,jitter={}ms,loss={}",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.loss
        )
    }
}

impl LinkEmulation {
    /// True when the link changes nothing.
    pub fn is_off(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.loss <= 0.0
    }

    /// This datagram's fate: `None` to drop it, else how long to hold it.
    fn fate(&self, rng: &mut Rng) -> Option<Duration> {
        if self.loss > 0.0 && rng.unit() < self.loss {
            return None;
        }
        if self.jitter.is_zero() {
            return Some(self.delay);
        }
        let j = self.jitter.as_micros() as u64;
        let offset = rng.range(0, 2 * j) as i128 - j as i128;
        let us = (self.delay.as_micros() as i128 + offset).max(0);
        Some(Duration::from_micros(us as u64))
    }
}

/// One datagram held back, ordered by when it may leave.
struct Held {
    due: Instant,
    seq: u64,
    to: SocketAddr,
    src_ip: Option<IpAddr>,
    ecn: Option<EcnCodepoint>,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    /// Reversed: the earliest due is the heap's top.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// The shared draws and queue length of an emulated link.
#[derive(Debug, Default)]
struct LinkState {
    rng: Option<Rng>,
    seq: u64,
    queued: usize,
}

/// quinn's UDP socket behind an emulated link (see the [module docs](self)).
pub struct EmulatedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    link: LinkEmulation,
    state: Arc<Mutex<LinkState>>,
    tx: mpsc::UnboundedSender<Held>,
}

impl fmt::Debug for EmulatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedSocket")
            .field("inner", &self.inner)
            .field("link", &self.link)
            .finish()
    }
}

impl EmulatedSocket {
    /// Wraps `inner`; spawns the task that sends held datagrams when due
    /// (on the current tokio runtime; it ends when the socket is dropped).
    /// `seed` seeds the loss and jitter draws.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, link: LinkEmulation, seed: u64) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(LinkState {
            rng: Some(Rng::new(seed)),
            ..LinkState::default()
        }));
        tokio::spawn(deliver(inner.clone(), rx, state.clone()));
        Arc::new(EmulatedSocket {
            inner,
            link,
            state,
            tx,
        })
    }
}

/// Sends each held datagram when it is due, in due order.
async fn deliver(
    inner: Arc<dyn AsyncUdpSocket>,
    mut rx: mpsc::UnboundedReceiver<Held>,
    state: Arc<Mutex<LinkState>>,
) {
    let mut heap: BinaryHeap<Held> = BinaryHeap::new();
    let mut poller = inner.clone().create_io_poller();
    loop {
        let next_due = heap.peek().map(|h| h.due);
        tokio::select! {
            got = rx.recv() => match got {
                Some(h) => heap.push(h),
                None => return,
            },
            _ = sleep_until(next_due), if next_due.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|h| h.due <= now) {
                    let Some(h) = heap.pop() else { break };
                    if let Ok(mut s) = state.lock() {
                        s.queued = s.queued.saturating_sub(1);
                    }
                    let transmit = Transmit {
                        destination: h.to,
                        ecn: h.ecn,
                        contents: &h.bytes,
                        segment_size: None,
                        src_ip: h.src_ip,
                    };
                    // A full socket buffer waits once for writability, then
                    // drops: a link that cannot send loses the datagram.
                    if let Err(e) = inner.try_send(&transmit)
                        && e.kind() == io::ErrorKind::WouldBlock
                    {
                        let _ = std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await;
                        let _ = inner.try_send(&transmit);
                    }
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

impl AsyncUdpSocket for EmulatedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // Sends never block: they only queue.
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Ok(mut s) = self.state.lock() else {
            return Ok(());
        };
        // One datagram per transmit: max_transmit_segments is 1.
        let fate = match s.rng.as_mut() {
            Some(rng) => self.link.fate(rng),
            None => Some(self.link.delay),
        };
        let Some(hold) = fate else {
            return Ok(());
        };
        if s.queued >= QUEUE_LIMIT {
            return Ok(());
        }
        s.queued += 1;
        s.seq += 1;
        let held = Held {
            due: Instant::now() + hold,
            seq: s.seq,
            to: transmit.destination,
            src_ip: transmit.src_ip,
            ecn: transmit.ecn,
            bytes: transmit.contents.to_vec(),
        };
        drop(s);
        // The receiver is gone only once the runtime is shutting down.
        let _ = self.tx.send(held);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_spec_and_refuses_bad_ones() {
        let l: LinkEmulation = "delay=50ms,jitter=10ms,loss=0.01".parse().unwrap();
        assert_eq!(l.delay, Duration::from_millis(50));
        assert_eq!(l.jitter, Duration::from_millis(10));
        assert_eq!(l.loss, 0.01);
        assert!(!l.is_off());
        assert!("".parse::<LinkEmulation>().unwrap().is_off());
        assert_eq!(
            "loss=1.5".parse::<LinkEmulation>(),
            Err(LinkSpecError::BadLoss("1.5".into()))
        );
        assert!(matches!(
            "delay=fast".parse::<LinkEmulation>(),
            Err(LinkSpecError::BadDuration { .. })
        ));
        assert!(matches!(
            "rate=1".parse::<LinkEmulation>(),
            Err(LinkSpecError::UnknownKey(_))
        ));
        assert!(matches!(
            "delay".parse::<LinkEmulation>(),
            Err(LinkSpecError::NotKeyValue(_))
        ));
        assert_eq!(
            "delay=2min".parse::<LinkEmulation>(),
            Err(LinkSpecError::TooLong("delay"))
        );
    }

    #[test]
    fn fates_follow_the_spec() {
        let l: LinkEmulation = "delay=50ms,jitter=10ms,loss=0.1".parse().unwrap();
        let mut rng = Rng::new(7);
        let n = 100_000;
        let fates: Vec<_> = (0..n).map(|_| l.fate(&mut rng)).collect();
        let lost = fates.iter().filter(|f| f.is_none()).count();
        assert!((8_000..12_000).contains(&lost), "lost {lost} of {n}");
        let kept: Vec<Duration> = fates.into_iter().flatten().collect();
        assert!(kept.iter().all(|d| *d >= Duration::from_millis(40)));
        assert!(kept.iter().all(|d| *d <= Duration::from_millis(60)));
        let mean = kept.iter().map(|d| d.as_micros()).sum::<u128>() / kept.len() as u128;
        assert!((49_000..51_000).contains(&mean), "mean {mean} us");
        assert!(kept.iter().any(|d| *d < Duration::from_millis(45)));
        assert!(kept.iter().any(|d| *d > Duration::from_millis(55)));
    }
}
