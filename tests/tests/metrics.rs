//! `/metrics` and `/sd` of real nodes, over real HTTP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use chorus_core::RingPos;
use chorus_node::net::NodeConfig;
use chorus_tests::{TestNode, ring_consistent, wait_until};

fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a full HTTP response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
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
        let mut c = NodeConfig::new(([127, 0, 0, 1], 0).into());
        c.bootstrap = bootstrap;
        c.metrics = Some(([127, 0, 0, 1], 0).into());
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

    for n in [c, b, a] {
        n.leave();
    }
}
