//! The HTTP server of `/metrics` and `/sd`: axum routes on hyper's HTTP/1.1
//! connection, with our own accept loop so that every bound is ours to set.
//!
//! What a client gets:
//!
//! - `GET /metrics`: the Prometheus text format, `text/plain; version=0.0.4; charset=utf-8`.
//! - `GET /sd`: a Prometheus HTTP service-discovery document, `application/json`.
//! - `HEAD` on both: the same headers, no body.
//! - gzip when the request says `Accept-Encoding: gzip` (Prometheus does by default).
//! - 404 with a hint on any other path, 405 (with `Allow`) for any other method,
//!   431 for a request head over [`MAX_REQUEST_HEAD`] bytes.
//! - HTTP/1.1 keep-alive: Prometheus and browsers reuse the connection.
//!
//! What a client cannot do (see [`Limits::DEFAULT`]): hold more than
//! [`MAX_CONNECTIONS`] connections, take more than [`HEADER_TIMEOUT`] to send a
//! request head (an idle keep-alive connection is closed after the same time),
//! stop reading a response for more than [`WRITE_STALL_TIMEOUT`], or make the
//! server buffer more than [`MAX_REQUEST_HEAD`] bytes of request head.
//!
//! axum's own `serve` takes no limits, hence the accept loop here: a
//! semaphore slot, `accept`, one task per connection running
//! `hyper::server::conn::http1` on the axum router. Connection tasks outlive
//! an aborted server task by at most those timeouts, as they did before.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower_http::compression::CompressionLayer;
use tracing::{debug, warn};

use super::MetricsError;

/// Most connections served at once. Beyond it the server stops accepting, so
/// further connections wait in the kernel's listen backlog (not in our memory)
/// until a slot frees; the timeouts below bound how long a slot is held.
/// Scrapers are a few Prometheus servers and the odd browser (about six
/// connections each), so 64 is far above need and a small cost at worst.
pub const MAX_CONNECTIONS: usize = 64;

/// Largest request head (request line and headers), in bytes; a larger one
/// gets `431 Request Header Fields Too Large` and the connection is closed.
/// The hand-written server's bound, and the least hyper accepts as its read
/// buffer size.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Time a client has to send a complete request head, counted from the
/// connection's start or from the end of the previous response. So it is also
/// how long an idle keep-alive connection stays open (hyper restarts this
/// timer whenever the connection goes idle). A client that trickles its head
/// byte by byte is cut off too: the bound is on the whole head, not on each
/// read. The hand-written server gave a whole connection 10 s.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a response write may make no progress (a client that stops reading
/// while its socket buffer is full) before the connection is dropped. hyper has
/// no write timeout of its own. The same 10 s as [`HEADER_TIMEOUT`].
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the metrics server needs from the node at each request.
pub trait MetricsSource: Send + Sync + 'static {
    /// Refreshes gauges and returns the exposition text.
    fn metrics_text(&self) -> String;
    /// Metrics addresses of every node known, this one included.
    fn sd_targets(&self) -> Vec<SocketAddr>;
}

/// Binds `addr` and serves `/metrics` and `/sd` until the task is aborted.
/// Returns the bound address (the port, when `addr` asked for port 0) and the
/// task serving it.
pub async fn serve(
    addr: SocketAddr,
    source: Arc<dyn MetricsSource>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    serve_with(addr, source, Limits::DEFAULT).await
}

/// The bounds of one server; tests shorten them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// See [`MAX_CONNECTIONS`].
    max_connections: usize,
    /// See [`HEADER_TIMEOUT`].
    header_timeout: Duration,
    /// See [`WRITE_STALL_TIMEOUT`].
    write_stall_timeout: Duration,
}

impl Limits {
    /// The bounds [`serve`] uses.
    const DEFAULT: Limits = Limits {
        max_connections: MAX_CONNECTIONS,
        header_timeout: HEADER_TIMEOUT,
        write_stall_timeout: WRITE_STALL_TIMEOUT,
    };
}

async fn serve_with(
    addr: SocketAddr,
    source: Arc<dyn MetricsSource>,
    limits: Limits,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let app = router(source);
    let task = tokio::spawn(accept_loop(listener, app, limits));
    Ok((bound, task))
}

/// The routes. GET routes answer HEAD too (axum drops the body and keeps the
/// headers). Compression wraps each route, so a HEAD answer carries the same
/// `Content-Encoding` as the GET it mirrors.
fn router(source: Arc<dyn MetricsSource>) -> Router {
    Router::new()
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/sd", get(sd).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(CompressionLayer::new())
        .with_state(source)
}

async fn metrics(State(source): State<Arc<dyn MetricsSource>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        source.metrics_text(),
    )
}

async fn sd(State(source): State<Arc<dyn MetricsSource>>) -> impl IntoResponse {
    let targets: Vec<String> = source.sd_targets().iter().map(|a| a.to_string()).collect();
    let doc = serde_json::json!([{"targets": targets, "labels": {"job": "chorus"}}]);
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "try /metrics or /sd\n")
}

async fn method_not_allowed() -> impl IntoResponse {
    (StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n")
}

/// Accepts connections until the task is aborted, at most
/// `limits.max_connections` at once.
async fn accept_loop(listener: TcpListener, app: Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // A slot first, then accept: a connection over the limit waits in the
        // kernel's backlog rather than being accepted and held here.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Most often out of file descriptors: back off, do not spin.
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small answers on a kept-alive connection must not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "metrics: TCP_NODELAY failed");
        }
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let io = TokioIo::new(WriteStallTimeout::new(stream, limits.write_stall_timeout));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_REQUEST_HEAD)
                .keep_alive(true)
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "metrics connection ended");
            }
            drop(slot);
        });
    }
}

/// A stream whose writes (and flushes) fail with `TimedOut` once they have
/// made no progress for `limit`; reads pass through untouched.
struct WriteStallTimeout<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is pending; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteStallTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteStallTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes `poll` on, starting the stall timer when it is pending and
    /// failing once the timer fires.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "metrics client stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Instant;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::*;

    /// A source with a fixed text, long enough to be worth compressing.
    struct Fixed {
        text: String,
    }

    impl MetricsSource for Fixed {
        fn metrics_text(&self) -> String {
            self.text.clone()
        }

        fn sd_targets(&self) -> Vec<SocketAddr> {
            vec![([127, 0, 0, 1], 9101).into()]
        }
    }

    fn text(lines: usize) -> String {
        (0..lines)
            .map(|i| format!("chorus_test_series{{n=\"{i}\"}} {i}\n"))
            .collect()
    }

    async fn start(text: String, limits: Limits) -> SocketAddr {
        let (addr, _task) =
            serve_with(([127, 0, 0, 1], 0).into(), Arc::new(Fixed { text }), limits)
                .await
                .unwrap();
        addr
    }

    fn short(header_timeout_ms: u64) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(header_timeout_ms),
            ..Limits::DEFAULT
        }
    }

    /// One HTTP/1.1 response, as read off the wire.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Reads one response: its head, then a body framed by `Content-Length`
    /// or chunked encoding (none when `head_only`, as after a HEAD).
    async fn read_reply(r: &mut BufReader<TcpStream>, head_only: bool) -> io::Result<Reply> {
        let mut line = String::new();
        r.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("a header line");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only {
            return Ok(reply);
        }
        if reply.header("transfer-encoding") == Some("chunked") {
            loop {
                line.clear();
                r.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).expect("a chunk size");
                let mut chunk = vec![0; size + 2];
                r.read_exact(&mut chunk).await?;
                assert_eq!(&chunk[size..], b"\r\n");
                if size == 0 {
                    break;
                }
                reply.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = reply.header("content-length") {
            let mut body = vec![0; len.parse().expect("a length")];
            r.read_exact(&mut body).await?;
            reply.body = body;
        }
        Ok(reply)
    }

    async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(addr).await.unwrap())
    }

    async fn request(r: &mut BufReader<TcpStream>, method: &str, path: &str, extra: &str) -> Reply {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        r.get_mut().write_all(req.as_bytes()).await.unwrap();
        read_reply(r, method == "HEAD").await.unwrap()
    }

    /// Reads until the server closes; `Err` when it did not within `within`.
    async fn closed_within(r: &mut BufReader<TcpStream>, within: Duration) -> Result<(), String> {
        let mut rest = Vec::new();
        match tokio::time::timeout(within, r.read_to_end(&mut rest)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("still open after {within:?}")),
        }
    }

    #[tokio::test]
    async fn metrics_http_keep_alive_answers_two_requests_on_one_connection() {
        let addr = start(text(10), Limits::DEFAULT).await;
        let mut c = connect(addr).await;
        let first = request(&mut c, "GET", "/metrics", "").await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header("content-type"), Some(PROMETHEUS_TEXT));
        assert_eq!(first.body, text(10).as_bytes());
        assert_ne!(first.header("connection"), Some("close"));
        let second = request(&mut c, "GET", "/sd", "").await;
        assert_eq!(second.status, 200);
        assert_eq!(second.header("content-type"), Some("application/json"));
        let doc: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(doc[0]["targets"][0], "127.0.0.1:9101");
        assert_eq!(doc[0]["labels"]["job"], "chorus");
    }

    #[tokio::test]
    async fn metrics_http_head_has_the_headers_and_no_body() {
        let addr = start(text(10), Limits::DEFAULT).await;
        for (path, content_type) in [("/metrics", PROMETHEUS_TEXT), ("/sd", "application/json")] {
            let mut c = connect(addr).await;
            let get = request(&mut c, "GET", path, "").await;
            c.get_mut()
                .write_all(
                    format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
            let mut raw = Vec::new();
            c.read_to_end(&mut raw).await.unwrap();
            let raw = String::from_utf8(raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").expect("a full head");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.contains(&format!("content-type: {content_type}\r\n")),
                "{head}"
            );
            assert!(
                head.contains(&format!("content-length: {}\r\n", get.body.len())),
                "{head}"
            );
            assert_eq!(body, "", "a HEAD answer has no body");
        }
    }

    #[tokio::test]
    async fn metrics_http_gzip_when_asked_and_it_decompresses_to_the_plain_body() {
        let addr = start(text(200), Limits::DEFAULT).await;
        let mut c = connect(addr).await;
        let plain = request(&mut c, "GET", "/metrics", "").await;
        assert_eq!(plain.header("content-encoding"), None);
        let zipped = request(&mut c, "GET", "/metrics", "Accept-Encoding: gzip\r\n").await;
        assert_eq!(zipped.status, 200);
        assert_eq!(zipped.header("content-encoding"), Some("gzip"));
        assert_eq!(zipped.header("content-type"), Some(PROMETHEUS_TEXT));
        assert!(zipped.body.len() < plain.body.len() / 2);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped.body[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain.body);
        let sd = request(&mut c, "GET", "/sd", "Accept-Encoding: gzip\r\n").await;
        assert_eq!(sd.header("content-encoding"), Some("gzip"));
        // HEAD mirrors the GET's headers, and still sends no body: the next
        // answer on the connection starts right after its head.
        let head = request(&mut c, "HEAD", "/metrics", "Accept-Encoding: gzip\r\n").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-encoding"), Some("gzip"));
        assert_eq!(request(&mut c, "GET", "/sd", "").await.status, 200);
    }

    #[tokio::test]
    async fn metrics_http_unknown_path_is_404_and_other_methods_405() {
        let addr = start(text(1), Limits::DEFAULT).await;
        let mut c = connect(addr).await;
        let r = request(&mut c, "GET", "/nope", "").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"try /metrics or /sd\n");
        // The query string is not part of the path.
        assert_eq!(request(&mut c, "GET", "/metrics?x=1", "").await.status, 200);
        let r = request(&mut c, "POST", "/metrics", "Content-Length: 0\r\n").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET,HEAD"));
        assert_eq!(request(&mut c, "DELETE", "/sd", "").await.status, 405);
        // The connection survives its errors.
        assert_eq!(request(&mut c, "GET", "/sd", "").await.status, 200);
    }

    #[tokio::test]
    async fn metrics_http_oversized_head_gets_431_and_others_are_served() {
        let addr = start(text(1), Limits::DEFAULT).await;
        let mut c = connect(addr).await;
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 2 * MAX_REQUEST_HEAD));
        huge.extend_from_slice(b"\r\n\r\n");
        c.get_mut().write_all(&huge).await.unwrap();
        let r = read_reply(&mut c, false).await.unwrap();
        assert_eq!(r.status, 431);
        closed_within(&mut c, Duration::from_secs(5)).await.unwrap();
        // A head just under the bound is fine.
        let mut c = connect(addr).await;
        let big = "a".repeat(MAX_REQUEST_HEAD - 200);
        let r = request(&mut c, "GET", "/metrics", &format!("X-Big: {big}\r\n")).await;
        assert_eq!(r.status, 200);
    }

    #[tokio::test]
    async fn metrics_http_slow_head_is_cut_off_at_the_bound_while_others_are_served() {
        let bound = Duration::from_millis(500);
        let addr = start(text(1), short(500)).await;
        // Never finishes its head.
        let mut stuck = connect(addr).await;
        stuck
            .get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Trickles a byte every 100 ms: each read is quick, the head is not.
        let mut trickle = connect(addr).await;
        let trickler = tokio::spawn(async move {
            let t0 = Instant::now();
            for b in b"GET /metrics HTTP/1.1\r\nX-Slow: 0123456789012345678901234567890\r\n" {
                if trickle.get_mut().write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            closed_within(&mut trickle, Duration::from_secs(5))
                .await
                .unwrap();
            t0.elapsed()
        });
        let t0 = Instant::now();
        // Meanwhile another client is served at once.
        let mut other = connect(addr).await;
        assert_eq!(request(&mut other, "GET", "/metrics", "").await.status, 200);
        assert!(t0.elapsed() < bound);
        closed_within(&mut stuck, Duration::from_secs(5))
            .await
            .unwrap();
        let took = t0.elapsed();
        assert!(took >= bound * 9 / 10 && took < bound * 4, "{took:?}");
        let took = trickler.await.unwrap();
        assert!(took >= bound * 9 / 10 && took < bound * 4, "{took:?}");
        // `other` idled out too by now; a new client is served.
        let mut last = connect(addr).await;
        assert_eq!(request(&mut last, "GET", "/sd", "").await.status, 200);
    }

    #[tokio::test]
    async fn metrics_http_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        let addr = start(text(1), short(300)).await;
        let mut c = connect(addr).await;
        assert_eq!(request(&mut c, "GET", "/metrics", "").await.status, 200);
        let t0 = Instant::now();
        closed_within(&mut c, Duration::from_secs(5)).await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn metrics_http_connections_over_the_limit_wait_for_a_slot() {
        let limits = Limits {
            max_connections: 1,
            ..short(500)
        };
        let addr = start(text(1), limits).await;
        let t0 = Instant::now();
        let mut idle = connect(addr).await;
        // Give the server time to accept `idle` first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut next = connect(addr).await;
        assert_eq!(request(&mut next, "GET", "/metrics", "").await.status, 200);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(450),
            "served after {waited:?}"
        );
        closed_within(&mut idle, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn metrics_http_client_that_stops_reading_loses_its_slot() {
        let limits = Limits {
            max_connections: 1,
            header_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_millis(300),
        };
        // About 4 MB a response; 32 pipelined ones outgrow any socket buffer.
        let addr = start(text(100_000), limits).await;
        let mut greedy = connect(addr).await;
        let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(32);
        greedy
            .get_mut()
            .write_all(pipelined.as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut next = connect(addr).await;
        let served = tokio::time::timeout(
            Duration::from_secs(10),
            request(&mut next, "GET", "/sd", ""),
        )
        .await
        .expect("served once the stalled connection is dropped");
        assert_eq!(served.status, 200);
        drop(greedy);
    }
}
