//! `/metrics` and `/sd` of real nodes, over real HTTP on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use chorus_core::RingPos;
use chorus_node::net::NodeConfig;
use chorus_tests::{TestNode, ring_consistent, wait_until};

/// One HTTP/1.1 response read off a connection.
struct Reply {
    /// The status line.
    status: String,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response; its body is framed by `Content-Length` or chunked
/// encoding, and absent when `head_only` (the answer to a HEAD).
fn read_reply(r: &mut BufReader<TcpStream>, head_only: bool) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("a status line");
    let status = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("a header line");
        let Some((n, v)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return reply;
    }
    if reply.header("transfer-encoding") == Some("chunked") {
        loop {
            line.clear();
            r.read_line(&mut line).expect("a chunk size");
            let size = usize::from_str_radix(line.trim(), 16).expect("a hex chunk size");
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).expect("a chunk");
            if size == 0 {
                break;
            }
            reply.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let len = reply
            .header("content-length")
            .map_or(0, |l| l.parse().expect("a length"));
        reply.body = vec![0; len];
        r.read_exact(&mut reply.body).expect("the body");
    }
    reply
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

/// Sends `request` on a new connection and reads one answer: (status line, body).
fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut c = connect(addr);
    c.get_mut().write_all(request).unwrap();
    let reply = read_reply(&mut c, false);
    (
        reply.status,
        String::from_utf8(reply.body).expect("a UTF-8 body"),
    )
}

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("series {series} missing in:\n{text}"))
}

#[test]
fn nodes_serve_ring_metrics_and_service_discovery() {
    let start = |bootstrap: Vec<SocketAddr>| {
        let mut c = NodeConfig::new((chorus_tests::next_host(), 0).into());
        c.bootstrap = bootstrap;
        c.metrics = Some((c.listen.ip(), 0).into());
        TestNode::start_with(c).unwrap()
    };
    let a = start(vec![]);
    let b = start(vec![a.addr]);
    let c = start(vec![a.addr]);
    let nodes = [&a, &b, &c];
    wait_until(Duration::from_secs(30), || ring_consistent(&nodes)).expect("ring forms");
    for k in 0..10u64 {
        a.rt.block_on(
            a.node()
                .lookup(RingPos(k.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
        )
        .unwrap();
    }
    let maddr = a.node().metrics_addr().expect("metrics served");

    let (status, text) = get(maddr, "/metrics");
    assert!(status.contains("200"), "{status}");
    for family in [
        "chorus_ring_successors",
        "chorus_ring_fingers",
        "chorus_ring_predecessor_known",
        "chorus_lookup_hops",
        "chorus_lookups_total",
        "chorus_peers_connected",
        "chorus_rpc_calls_total",
        "chorus_bytes_sent_total",
        "chorus_bytes_received_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no help text"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} has no type"
        );
    }
    // The gauge follows the ring: it equals the successor list's length once
    // stabilization has settled (a scrape can land between two rounds).
    wait_until(Duration::from_secs(10), || {
        let (_, text) = get(maddr, "/metrics");
        let have = value(&text, "chorus_ring_successors ");
        let want = a.view().map_err(|e| e.to_string())?.successors.len() as f64;
        if have == want {
            Ok(())
        } else {
            Err(format!("gauge {have}, successor list {want}"))
        }
    })
    .expect("chorus_ring_successors matches the successor list");
    assert_eq!(value(&text, "chorus_ring_predecessor_known "), 1.0);
    assert!(value(&text, "chorus_lookups_total{result=\"ok\"} ") >= 10.0);
    assert!(value(&text, "chorus_lookup_hops_count ") >= 10.0);
    assert!(value(&text, "chorus_rpc_calls_total ") > 0.0);
    assert!(value(&text, "chorus_bytes_sent_total ") > 0.0);
    assert!(value(&text, "chorus_peers_connected ") >= 1.0);

    let (status, sd) = get(maddr, "/sd");
    assert!(status.contains("200"), "{status}");
    let doc: serde_json::Value = serde_json::from_str(&sd).expect("sd is JSON");
    let targets = doc[0]["targets"].as_array().expect("targets");
    assert!(
        targets
            .iter()
            .any(|t| t == &serde_json::json!(maddr.to_string())),
        "{sd}"
    );
    assert_eq!(doc[0]["labels"]["job"], "chorus");

    // Bad requests get clear HTTP errors and the server keeps serving.
    assert!(get(maddr, "/nope").0.contains("404"));
    assert!(
        http(maddr, b"POST /metrics HTTP/1.1\r\n\r\n")
            .0
            .contains("405")
    );
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 16 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert!(http(maddr, &huge).0.contains("431"));
    assert!(get(maddr, "/metrics").0.contains("200"));

    // One kept-alive connection, as Prometheus uses: plain, gzip, HEAD, GET.
    let mut conn = connect(maddr);
    conn.get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let plain = read_reply(&mut conn, false);
    assert!(plain.status.contains("200"), "{}", plain.status);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(plain.header("content-encoding"), None);
    conn.get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let zipped = read_reply(&mut conn, false);
    assert!(zipped.status.contains("200"), "{}", zipped.status);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    assert!(
        text.contains("# TYPE chorus_ring_successors gauge"),
        "{text}"
    );
    assert!(zipped.body.len() < text.len() / 2);
    conn.get_mut()
        .write_all(b"HEAD /sd HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_reply(&mut conn, true);
    assert!(head.status.contains("200"), "{}", head.status);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert!(head.header("content-length").is_some());
    // Had the HEAD answer carried a body, it would stand where this status line is.
    conn.get_mut()
        .write_all(b"GET /sd HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let sd = read_reply(&mut conn, false);
    assert!(sd.status.starts_with("HTTP/1.1 200"), "{}", sd.status);
    assert_eq!(sd.header("content-type"), Some("application/json"));

    for n in [c, b, a] {
        n.leave();
    }
}
