//! The files in `dashboards/`: every Grafana dashboard is well formed and reads
//! only metrics the node defines, `promtool` accepts the Prometheus config and
//! the alert rules (and their unit tests pass), and `promtool check metrics`
//! accepts the real `/metrics` output of every node of a running cluster.
//!
//! Needs `promtool` (Debian package `prometheus`, installed by `.ci/run`): the
//! tests fail, they do not skip, when it is missing.
//!
//! Run: `cargo test --release -p chorus-tests --test dashboards`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chorus_core::RingPos;
use chorus_tests::TestNode;
use serde_json::Value;

/// Every metric family name the node defines (the dashboards may use no other).
const METRICS_SOURCE: &str = include_str!("../../node/src/metrics/mod.rs");

#[test]
fn every_dashboard_is_well_formed() {
    let ds_uid = provisioned_datasource_uid();
    let boards = dashboards();
    assert!(
        boards.len() >= 2,
        "expected the grid overview and node detail dashboards, found {boards:?}"
    );
    let mut uids = Vec::new();
    let mut problems = Vec::new();
    for (path, board) in &boards {
        let name = path.strip_prefix(dir()).unwrap_or(path).display();
        let uid = board["uid"].as_str().unwrap_or("");
        if uid.is_empty() {
            problems.push(format!("{name}: no uid"));
        }
        uids.push(uid.to_string());
        if board["title"].as_str().unwrap_or("").is_empty() {
            problems.push(format!("{name}: no title"));
        }
        if board["schemaVersion"].as_u64().unwrap_or(0) < 36 {
            problems.push(format!(
                "{name}: schemaVersion below 36 (Grafana 9); Grafana 10/11 expects 38-39"
            ));
        }
        let panels = panels(board);
        if panels.is_empty() {
            problems.push(format!("{name}: no panels"));
        }
        let mut ids = Vec::new();
        for p in &panels {
            let title = p["title"].as_str().unwrap_or("");
            let at = format!("{name}: panel {title:?}");
            ids.push(p["id"].as_u64());
            if title.is_empty() {
                problems.push(format!("{at}: no title"));
            }
            if p["type"] == "row" {
                continue;
            }
            if !["timeseries", "stat", "gauge", "bargauge", "table"]
                .contains(&p["type"].as_str().unwrap_or(""))
            {
                problems.push(format!("{at}: unexpected panel type {}", p["type"]));
            }
            if p["description"].as_str().unwrap_or("").is_empty() {
                problems.push(format!("{at}: no description"));
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or("")
                .is_empty()
            {
                problems.push(format!("{at}: no unit (fieldConfig.defaults.unit)"));
            }
            if p["gridPos"]["w"].as_u64().unwrap_or(0) == 0 {
                problems.push(format!("{at}: no gridPos"));
            }
            if p["type"] == "timeseries" && p["options"]["legend"]["showLegend"] != true {
                problems.push(format!("{at}: legend hidden"));
            }
            check_datasource(&p["datasource"], &ds_uid, &at, &mut problems);
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no targets"));
            }
            for t in &targets {
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() {
                    problems.push(format!("{at}: target {} has no expression", t["refId"]));
                }
                if t["refId"].as_str().unwrap_or("").is_empty() {
                    problems.push(format!("{at}: target without refId"));
                }
                check_datasource(&t["datasource"], &ds_uid, &at, &mut problems);
                for m in unknown_metrics(expr) {
                    problems.push(format!(
                        "{at}: {m} is not defined in node/src/metrics/mod.rs"
                    ));
                }
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != ids.len() || ids.contains(&None) {
            problems.push(format!("{name}: panel ids missing or not unique"));
        }
        for v in board["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] == "query" {
                check_datasource(
                    &v["datasource"],
                    &ds_uid,
                    &format!("{name}: variable {}", v["name"]),
                    &mut problems,
                );
            }
        }
    }
    let mut unique = uids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), uids.len(), "dashboard uids repeat: {uids:?}");

    // The per-node drill-down has an instance variable that its queries use.
    let (_, detail) = boards
        .iter()
        .find(|(p, _)| p.ends_with("node-detail.json"))
        .expect("dashboards/node-detail.json");
    let vars = detail["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "instance"),
        "node-detail.json has no instance variable"
    );
    for p in panels(detail).iter().filter(|p| p["type"] != "row") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or("");
            if !expr.contains("$instance") && !expr.contains("${instance") {
                problems.push(format!(
                    "node-detail.json: panel {}: query ignores $instance: {expr}",
                    p["title"]
                ));
            }
        }
    }
    // The grid overview covers what the issue lists.
    let (_, overview) = boards
        .iter()
        .find(|(p, _)| p.ends_with("grid-overview.json"))
        .expect("dashboards/grid-overview.json");
    let all_exprs: String = panels(overview)
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for needed in [
        "up{",
        "chorus_capacity_known_peers",
        "chorus_lookup_hops",
        "chorus_tasks_executed_total",
        "chorus_verifications_total",
        "chorus_results_rejected_total",
        "chorus_capacity_cores",
        "chorus_capacity_slots_free",
        "chorus_capacity_fuel_per_second",
        "chorus_rpc_errors_total",
    ] {
        if !all_exprs.contains(needed) {
            problems.push(format!("grid-overview.json: no panel reads {needed}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn alert_rules_read_only_defined_metrics() {
    let rules = std::fs::read_to_string(dir().join("alerts.yml")).expect("alerts.yml");
    let unknown = unknown_metrics(&rules);
    assert!(
        unknown.is_empty(),
        "alerts.yml reads metrics node/src/metrics/mod.rs does not define: {unknown:?}"
    );
}

#[test]
fn promtool_accepts_config_and_rules() {
    let d = dir();
    promtool(
        &["check", "config", path_str(&d.join("prometheus.yml"))],
        None,
    );
    promtool(&["check", "rules", path_str(&d.join("alerts.yml"))], None);
    promtool(
        &["test", "rules", path_str(&d.join("alerts_test.yml"))],
        None,
    );
}

#[test]
fn promtool_accepts_every_nodes_metrics() {
    let cluster = chorus_tests::start_cluster(3, |_, c| {
        c.metrics = Some((c.listen.ip(), 0).into());
        c.cores = 2;
    })
    .expect("cluster");
    let nodes: Vec<&TestNode> = cluster.iter().collect();
    // Some lookups, so the hop histograms hold observations.
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..5u64 {
            let key = RingPos((k + 7 * i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            n.rt.block_on(n.node().lookup(key)).expect("lookup");
        }
    }
    for n in &nodes {
        let maddr = n.node().metrics_addr().expect("metrics served");
        let text = http_get(maddr, "/metrics");
        assert!(text.contains("# HELP chorus_ring_successors "), "{text}");
        promtool(&["check", "metrics"], Some(&text));
    }
    for n in cluster.into_iter().rev() {
        n.leave();
    }
}

/// `dashboards/` in the repository.
fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Every `*.json` dashboard under `dashboards/`, parsed.
fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dashboards/") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).expect("read dashboard");
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
                out.push((p, v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The panels of a dashboard, with those nested in collapsed rows.
fn panels(board: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in board["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        out.extend(p["panels"].as_array().into_iter().flatten().cloned());
    }
    out
}

/// The uid of the datasource `provisioning/datasources/chorus.yml` creates.
fn provisioned_datasource_uid() -> String {
    let yml = std::fs::read_to_string(dir().join("provisioning/datasources/chorus.yml"))
        .expect("provisioning/datasources/chorus.yml");
    assert!(yml.contains("type: prometheus"), "{yml}");
    yml.lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches('"').to_string())
        .expect("the provisioned datasource has a uid")
}

fn check_datasource(ds: &Value, uid: &str, at: &str, problems: &mut Vec<String>) {
    if ds["type"] != "prometheus" {
        problems.push(format!("{at}: datasource type is not prometheus: {ds}"));
    }
    if ds["uid"] != uid {
        problems.push(format!(
            "{at}: datasource uid {} is not the provisioned {uid:?}",
            ds["uid"]
        ));
    }
}

/// Names `chorus_*` in `text` that `node/src/metrics/mod.rs` does not define
/// (histogram series `_bucket`, `_sum` and `_count` count as their family).
fn unknown_metrics(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("chorus_") {
        let start = i + off;
        let preceded = start > 0 && {
            let c = bytes[start - 1];
            c.is_ascii_alphanumeric() || c == b'_'
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        i = end;
        if preceded {
            continue;
        }
        let name = &text[start..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| METRICS_SOURCE.contains(&format!("\"{f}\"")))
            .unwrap_or(name);
        if !METRICS_SOURCE.contains(&format!("\"{family}\"")) && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Runs promtool (stdin from `input`), panics unless it succeeds; returns its output.
fn promtool(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install the Debian package `prometheus`")
        });
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

/// A plain HTTP/1.1 GET of the node's metrics server; the body. It reads to
/// the end, so it asks the server to close (HTTP/1.1 keeps connections open).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a full HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
