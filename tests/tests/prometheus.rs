//! A real Prometheus server scrapes a real cluster while a real job runs, and
//! every query of every Grafana dashboard in `dashboards/` returns data.
//!
//! The cluster (4 nodes on 127.0.0.1, metrics on their own HTTP ports) is found
//! through ONE node's `/sd` endpoint, as `dashboards/prometheus.yml` does it.
//! Prometheus (`/usr/bin/prometheus` from the Debian package `prometheus`,
//! installed by `.ci/run`; the test fails, it does not skip, when it is missing)
//! scrapes every second and evaluates `dashboards/alerts.yml`. After the job
//! every dashboard query, with Grafana's variables replaced by match-all values,
//! goes through `/api/v1/query`; a query that returns nothing fails the test.
//!
//! Run: `cargo test --release -p chorus-tests --test prometheus -- --nocapture`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_core::jobs::Policy;
use chorus_node::net::call_node;
use chorus_sdk::bundle::{Bundle, Manifest};
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobId, JobRequest, JobResponse, JobSpec, JobStatus};
use chorus_sdk::wire::{Request, Response};
use chorus_tests::{TestNode, wait_until};
use serde_json::Value;

const PRIMES: &[u8] = include_bytes!("../../examples/wasm/primes.wasm");

/// Nodes in the cluster.
const NODES: usize = 4;
/// Tasks in the job; each counts the primes in a range of `TASK_SPAN` numbers.
const TASKS: u64 = 48;
const TASK_SPAN: u64 = 40_000_000;
/// What Grafana's `$__rate_interval` becomes: 4 scrape intervals of Grafana's
/// default 15 s, which is what Grafana computes for a 15 s `timeInterval`.
const RATE_INTERVAL: &str = "1m";

/// The input of the primes example (its `kernel::Range`).
#[derive(serde::Serialize)]
struct Range {
    lo: u64,
    hi: u64,
}

#[test]
fn prometheus_scrapes_the_ring_and_every_dashboard_query_returns_data() {
    let began = Instant::now();
    let nodes = start_cluster();
    let metrics: BTreeSet<String> = nodes
        .iter()
        .map(|n| n.node().metrics_addr().expect("metrics served").to_string())
        .collect();
    let sd_node = nodes[0].node().metrics_addr().expect("metrics served");

    // Capacity records (and with them metrics addresses) ride on ring traffic:
    // wait until the one node Prometheus asks knows every other.
    wait_until(Duration::from_secs(30), || {
        let sd = http_get(&format!("http://{sd_node}/sd"))?;
        let doc: Value = serde_json::from_str(&sd).map_err(|e| e.to_string())?;
        let listed: BTreeSet<String> = doc[0]["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        if listed.is_superset(&metrics) {
            Ok(())
        } else {
            Err(format!("/sd lists {listed:?}, want {metrics:?}"))
        }
    })
    .expect("one node's /sd lists every node");

    let prom = Prometheus::start(sd_node);
    eprintln!("prometheus at {} after {:?}", prom.addr, began.elapsed());
    wait_until(Duration::from_secs(30), || {
        let targets = prom.active_targets()?;
        let up: BTreeSet<String> = targets
            .iter()
            .filter(|(_, health)| health == "up")
            .map(|(i, _)| i.clone())
            .collect();
        if targets.len() >= NODES && up == metrics {
            Ok(())
        } else {
            Err(format!("targets {targets:?}, want all of {metrics:?} up"))
        }
    })
    .unwrap_or_else(|e| panic!("Prometheus finds the ring through /sd: {e}\n{}", prom.log()));

    // Lookups from every node (what `chorus lookup` does), for the hop panels.
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..8u64 {
            let key = chorus_core::RingPos((k * 31 + i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            n.rt.block_on(n.node().lookup(key)).expect("lookup");
        }
    }

    // A real job: submitted to one node, forwarded to its coordinator, run on
    // the workers with 2 replicas and a quorum of 2, polled until done.
    let submit_to = nodes[1].addr;
    let job_start = Instant::now();
    let job = submit(&nodes[1], submit_to);
    let status = wait_done(&nodes[1], submit_to, job);
    let job_time = job_start.elapsed();
    eprintln!("job {job} done in {job_time:?}: {status:?}");
    assert_eq!(status.verified, TASKS as u32, "{status:?}");
    assert_eq!(status.failed, 0, "{status:?}");

    // Prometheus saw the job while it ran, and saw every decided task.
    wait_until(Duration::from_secs(20), || {
        let accepted = prom.value(r#"sum(chorus_verifications_total{outcome="accepted"})"#)?;
        let ran = prom.value(r#"sum(chorus_tasks_executed_total{outcome="ok"})"#)?;
        if accepted >= TASKS as f64 && ran >= 2.0 * TASKS as f64 {
            Ok(())
        } else {
            Err(format!("accepted {accepted}, ran {ran}"))
        }
    })
    .unwrap_or_else(|e| panic!("Prometheus sees the job's results: {e}\n{}", prom.log()));
    let running_seen = prom
        .value(r#"sum(max_over_time(chorus_jobs{state="running"}[10m]))"#)
        .expect("query");
    assert!(
        running_seen >= 1.0,
        "no scrape saw the job running (it took {job_time:?})"
    );
    // Two more scrapes, so every rate() has two samples after the job.
    std::thread::sleep(Duration::from_millis(2500));

    // Every query of every dashboard returns data.
    let mut checked = 0;
    let mut empty = Vec::new();
    let mut nan_only = Vec::new();
    for (file, query) in dashboard_queries() {
        checked += 1;
        match prom.query(&query) {
            Ok(result) if result.is_empty() => empty.push(format!("{file}: {query}")),
            Ok(result) => {
                if result.iter().all(|s| s["value"][1] == "NaN") {
                    nan_only.push(format!("{file}: {query}"));
                }
            }
            Err(e) => empty.push(format!("{file}: {query}: {e}")),
        }
    }
    eprintln!(
        "{checked} dashboard queries checked; {} returned only NaN:\n  {}",
        nan_only.len(),
        nan_only.join("\n  ")
    );
    assert!(
        empty.is_empty(),
        "{} of {checked} dashboard queries returned no data:\n{}",
        empty.len(),
        empty.join("\n")
    );
    assert!(checked >= 40, "only {checked} dashboard queries found");

    // The alert rules evaluate without errors against real data.
    let rules = prom.api("/api/v1/rules").expect("rules");
    let mut evaluated = 0;
    for g in rules["groups"].as_array().into_iter().flatten() {
        for r in g["rules"].as_array().into_iter().flatten() {
            evaluated += 1;
            assert_eq!(
                r["health"], "ok",
                "rule {} does not evaluate: {r}",
                r["name"]
            );
        }
    }
    assert!(evaluated >= 4, "alerts.yml loaded {evaluated} rules");

    // What Prometheus scraped after a job passes promtool's lint too.
    for m in &metrics {
        let text = http_get(&format!("http://{m}/metrics")).expect("metrics");
        promtool_check_metrics(&text, m);
    }

    drop(prom);
    for n in nodes {
        n.leave();
    }
    eprintln!("whole test took {:?}", began.elapsed());
}

/// Starts `NODES` nodes with metrics on loopback, in a consistent ring whose
/// nodes know each other's capacity records.
fn start_cluster() -> Vec<TestNode> {
    chorus_tests::start_cluster(NODES, |_, c| {
        c.metrics = Some((c.listen.ip(), 0).into());
        c.cores = 2;
    })
    .expect("cluster")
}

fn submit(client: &TestNode, to: SocketAddr) -> JobId {
    let identity = Identity::generate().expect("identity");
    let bundle = Bundle::sign(
        Manifest::new("primes", "1", identity.public_key()),
        PRIMES.to_vec(),
        &identity,
    )
    .expect("bundle");
    let inputs = (0..TASKS)
        .map(|i| {
            let lo = 1_000_000_000 + i * TASK_SPAN;
            rmp_serde::to_vec(&Range {
                lo,
                hi: lo + TASK_SPAN,
            })
            .expect("encode")
        })
        .collect();
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let policy = Policy::new(2, None, None).expect("policy");
    let spec = JobSpec::new(&bundle, inputs, Some(policy), None, nonce)
        .expect("spec")
        .sign(&identity)
        .expect("sign");
    let request = Request::Job(JobRequest::Submit {
        spec: Box::new(spec),
        forwarded: false,
    });
    match client
        .rt
        .block_on(call_node(to, &request, Duration::from_secs(30)))
    {
        Ok(Response::Job(JobResponse::Accepted { job, coordinator })) => {
            eprintln!("job {job} accepted, coordinator {}", coordinator.addr);
            job
        }
        other => panic!("submit: {other:?}"),
    }
}

fn wait_done(client: &TestNode, to: SocketAddr, job: JobId) -> JobStatus {
    let request = Request::Job(JobRequest::Status {
        job,
        forwarded: false,
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = None;
    for _ in 0..1800 {
        match client
            .rt
            .block_on(call_node(to, &request, Duration::from_secs(10)))
        {
            Ok(Response::Job(JobResponse::Status(s))) if s.done => return *s,
            Ok(Response::Job(JobResponse::Status(s))) => last = Some(format!("{s:?}")),
            other => last = Some(format!("{other:?}")),
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("job {job} not done within 180 s; last status: {last:?}");
}

/// Every PromQL expression of every dashboard under `dashboards/`, with Grafana
/// variables replaced by match-all values: panel targets, and the series
/// behind `label_values(...)` template variables.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "dashboards: {files:?}");
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let board: Value =
            serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("JSON");
        let vars: Vec<String> = board["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        let mut exprs = Vec::new();
        for v in board["templating"]["list"].as_array().into_iter().flatten() {
            let def = v["definition"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .or_else(|| v["query"].as_str())
                .unwrap_or("");
            if let Some(series) = def
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .map(|(series, _)| series)
            {
                exprs.push(series.to_string());
            }
        }
        for p in board["panels"].as_array().into_iter().flatten() {
            let nested = p["panels"].as_array().cloned().unwrap_or_default();
            for panel in std::iter::once(p).chain(nested.iter()) {
                for t in panel["targets"].as_array().into_iter().flatten() {
                    if let Some(e) = t["expr"].as_str() {
                        exprs.push(e.to_string());
                    }
                }
            }
        }
        for e in exprs {
            let q = substitute(&e, &vars);
            assert!(!q.contains('$'), "{name}: unknown variable in {e}");
            out.push((name.clone(), q));
        }
    }
    out
}

/// Grafana's interval variables become [`RATE_INTERVAL`]; the dashboard's
/// own variables (`$v`, `${v}`, `${v:format}`) become the match-all regex `.*`.
fn substitute(expr: &str, vars: &[String]) -> String {
    let mut q = expr.to_string();
    for iv in ["__rate_interval", "__interval", "__range"] {
        q = q
            .replace(&format!("${{{iv}}}"), RATE_INTERVAL)
            .replace(&format!("${iv}"), RATE_INTERVAL);
    }
    for v in vars {
        for fmt in ["", ":regex", ":pipe", ":raw"] {
            q = q.replace(&format!("${{{v}{fmt}}}"), ".*");
        }
        q = q.replace(&format!("${v}"), ".*");
    }
    q
}

/// A Prometheus server on loopback, killed (and its data removed) on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` scraping what `sd` (a node's metrics
    /// address) lists, every second; waits until it is ready.
    fn start(sd: SocketAddr) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(
            bin.exists(),
            "{} is missing: install the Debian package `prometheus` (.ci/run does)",
            bin.display()
        );
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("chorus-prometheus-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: chorus\n    http_sd_configs:\n      - url: http://{sd}/sd\n        refresh_interval: 1s\n",
            rules = rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        // A free port can be taken between our probe and Prometheus's bind: try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
            let mut child = Command::new(bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            let ready = wait_until(Duration::from_secs(30), || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("prometheus exited: {status}"));
                }
                let r = agent
                    .get(&format!("http://{addr}/-/ready"))
                    .call()
                    .map_err(|e| e.to_string())?;
                if r.status() == 200 {
                    Ok(())
                } else {
                    Err(format!("/-/ready: {}", r.status()))
                }
            });
            match ready {
                Ok(_) => {
                    return Prometheus {
                        child,
                        dir,
                        addr,
                        agent,
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log =
                        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                    last_log = format!("{e}\n{log}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("prometheus did not start: {last_log}");
    }

    /// `data` of a Prometheus API answer.
    fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let mut r = self
            .agent
            .get(&format!("http://{}{path_and_query}", self.addr))
            .call()
            .map_err(|e| e.to_string())?;
        let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {body}", r.status()));
        }
        Ok(v["data"].clone())
    }

    /// The instant vector of `expr` now.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let mut r = self
            .agent
            .get(&format!("http://{}/api/v1/query", self.addr))
            .query("query", expr)
            .call()
            .map_err(|e| e.to_string())?;
        let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        match v["data"]["resultType"].as_str() {
            Some("vector") => Ok(v["data"]["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![serde_json::json!({"value": v["data"]["result"]})]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// The single value of `expr` (an aggregation).
    fn value(&self, expr: &str) -> Result<f64, String> {
        let r = self.query(expr)?;
        let s = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .ok_or_else(|| format!("{expr}: no data"))?;
        s.parse().map_err(|e| format!("{expr}: {s}: {e}"))
    }

    /// (instance, health) of every active target.
    fn active_targets(&self) -> Result<Vec<(String, String)>, String> {
        let data = self.api("/api/v1/targets?state=active")?;
        Ok(data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["labels"]["instance"].as_str().unwrap_or("").to_string(),
                    t["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    /// The last lines of Prometheus's log, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("prometheus log (tail):\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET` over plain HTTP on loopback: the body of a 200 answer.
fn http_get(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .into();
    let mut r = agent.get(url).call().map_err(|e| e.to_string())?;
    r.body_mut().read_to_string().map_err(|e| e.to_string())
}

fn promtool_check_metrics(text: &str, from: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install the Debian package `prometheus`")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics on {from}'s /metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
