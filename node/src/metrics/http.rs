//! The HTTP server of `/metrics` and `/sd`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::MetricsError;

/// Largest HTTP request head the metrics server reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// What the metrics server needs from the node at each request.
pub trait MetricsSource: Send + Sync + 'static {
    /// Refreshes gauges and returns the exposition text.
    fn metrics_text(&self) -> String;
    /// Metrics addresses of every node known, this one included.
    fn sd_targets(&self) -> Vec<SocketAddr>;
}

/// Binds `addr` and serves `/metrics` and `/sd` until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    source: Arc<dyn MetricsSource>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let source = source.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    tokio::time::timeout(Duration::from_secs(10), handle(stream, source)).await
                {
                    debug!(%peer, error = %e, "metrics request timed out");
                }
            });
        }
    });
    Ok((bound, task))
}

async fn handle(mut stream: tokio::net::TcpStream, source: Arc<dyn MetricsSource>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
            // Read (a bounded amount of) what the client is still sending, so
            // closing does not reset the connection before it reads our answer.
            let mut drained = 0usize;
            let drain = async {
                while drained < 1 << 20 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            return;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let result = match (method, path) {
        ("GET", "/metrics") => {
            let body = source.metrics_text();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        ("GET", "/sd") => {
            let targets: Vec<String> = source.sd_targets().iter().map(|a| a.to_string()).collect();
            let doc = serde_json::json!([{"targets": targets, "labels": {"job": "chorus"}}]);
            respond(&mut stream, "200 OK", "application/json", &doc.to_string()).await
        }
        ("GET", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "try /metrics or /sd\n",
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            )
            .await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "metrics response failed");
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
