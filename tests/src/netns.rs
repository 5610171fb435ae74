//! Real hosts for network tests: Linux network namespaces joined by bridges,
//! each running a real `chorus node` process.
//!
//! The layout of one [`Net`]:
//!
//! ```text
//!   host h0 ─┐                         ┌─ host h8
//!   host h1 ─┼─ bridge a ══ trunk ══ bridge b ─┼─ host h9
//!   ...     ─┘   (switch namespace)    └─ ...
//! ```
//!
//! Every host is a namespace with one interface `eth0` at `10.99.<i>.1/16`
//! (each host its own /24, so replica diversity treats them as distinct
//! networks), cabled by a veth pair to a port of its side's bridge in the
//! switch namespace. The two bridges are joined by a veth trunk:
//! [`Net::partition`] takes the trunk down (the sides cannot reach each other)
//! and [`Net::heal`] brings it back; [`Net::unplug`] and [`Net::plug`] do the
//! same to one host's cable. The namespaces are removed and the node
//! processes killed on drop. Needs root and iproute2 (`ip`).
//!
//! Delay, jitter and loss do not come from the kernel (no `netem` here) but
//! from each node's own socket: `chorus node --emulate-link`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_core::RingPos;
use serde_json::Value;

use crate::{TempDir, chorus_bin, true_owner};

/// The UDP port every node listens on (each host has its own address).
pub const PORT: u16 = 7000;

/// Which side of the trunk a host is cabled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Bridge a (the first host's side).
    A,
    /// Bridge b.
    B,
}

/// One host: a namespace, its address, its node process.
#[derive(Debug)]
pub struct Host {
    /// Index in [`Net::hosts`].
    pub index: usize,
    /// The namespace's name.
    pub ns: String,
    /// The host's address.
    pub ip: Ipv4Addr,
    /// Its side of the trunk.
    pub side: Side,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// Where the node's stdout and stderr go.
    pub log: PathBuf,
    node: Option<Child>,
}

impl Host {
    /// The node's QUIC address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }
}

/// A set of hosts on two bridges joined by a trunk (see the [module docs](self)).
pub struct Net {
    /// The hosts, in index order.
    pub hosts: Vec<Host>,
    switch: String,
    /// Data dirs, logs and job files.
    pub dir: TempDir,
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// True when this process may build namespaces (root with iproute2).
pub fn available() -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| format!("ip (iproute2) not found: {e}"))?;
    if !out.status.success() {
        return Err("`ip netns list` failed".into());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("network namespace tests need root".into());
    }
    Ok(())
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// Builds `n` hosts; host i goes on `side(i)`. No node runs yet.
    pub fn new(name: &str, n: usize, side: impl Fn(usize) -> Side) -> anyhow::Result<Net> {
        assert!((1..=250).contains(&n), "1..=250 hosts");
        assert!(!name.contains('-'), "a name without '-'");
        remove_stale();
        let prefix = format!(
            "chorus-{}-{}-{}",
            name,
            std::process::id(),
            NEXT_NET.fetch_add(1, Ordering::Relaxed)
        );
        let dir = TempDir::new(
            "netns",
            &format!("{name}-{}", NEXT_NET.load(Ordering::Relaxed)),
        );
        let switch = format!("{prefix}-sw");
        let mut net = Net {
            hosts: Vec::new(),
            switch: switch.clone(),
            dir,
        };
        // Drop removes whatever was built if a step fails.
        ip(&["netns", "add", &switch])?;
        let sw = |args: &[&str]| {
            let mut v = vec!["-n", switch.as_str()];
            v.extend_from_slice(args);
            ip(&v)
        };
        sw(&["link", "set", "lo", "up"])?;
        for br in ["bra", "brb"] {
            sw(&["link", "add", br, "type", "bridge", "stp_state", "0"])?;
            sw(&["link", "set", br, "up"])?;
        }
        sw(&["link", "add", "ta", "type", "veth", "peer", "name", "tb"])?;
        sw(&["link", "set", "ta", "master", "bra"])?;
        sw(&["link", "set", "tb", "master", "brb"])?;
        sw(&["link", "set", "ta", "up"])?;
        sw(&["link", "set", "tb", "up"])?;
        for i in 0..n {
            let ns = format!("{prefix}-h{i}");
            let s = side(i);
            ip(&["netns", "add", &ns])?;
            let host_ip = Ipv4Addr::new(10, 99, i as u8, 1);
            let data_dir = net.dir.0.join(format!("h{i}"));
            std::fs::create_dir_all(&data_dir)?;
            net.hosts.push(Host {
                index: i,
                ns: ns.clone(),
                ip: host_ip,
                side: s,
                data_dir,
                log: net.dir.0.join(format!("h{i}.log")),
                node: None,
            });
            let port = format!("p{i}");
            sw(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            let bridge = if s == Side::A { "bra" } else { "brb" };
            sw(&["link", "set", &port, "master", bridge])?;
            sw(&["link", "set", &port, "up"])?;
            let cidr = format!("{host_ip}/16");
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Starts host i's node with `extra` flags (e.g. `--emulate-link …`),
    /// joining through `bootstrap` (none: a new ring).
    pub fn start(
        &mut self,
        i: usize,
        bootstrap: Option<SocketAddr>,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let bin = chorus_bin();
        let h = &mut self.hosts[i];
        let log = std::fs::File::create(&h.log)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.ns])
            .arg(&bin)
            .arg("node")
            .arg("--listen")
            .arg(h.addr().to_string())
            .arg("--data-dir")
            .arg(&h.data_dir)
            .args(["--cores", "1", "--memory-mb", "512"]);
        if let Some(b) = bootstrap {
            cmd.arg("--bootstrap").arg(b.to_string());
        }
        cmd.args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        h.node = Some(cmd.spawn().context("spawning chorus node")?);
        Ok(())
    }

    /// Starts every node: host 0 a new ring, the others through host 0.
    pub fn start_all(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        let first = self.hosts[0].addr();
        self.start(0, None, extra)?;
        for i in 1..self.hosts.len() {
            self.start(i, Some(first), extra)?;
        }
        Ok(())
    }

    /// Runs `chorus ARGS` inside host i's namespace.
    pub fn chorus(&self, i: usize, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .arg(chorus_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running chorus in a namespace")
    }

    /// Host i's ring view: (id, predecessor id, successor ids), from its node.
    pub fn view(&self, i: usize) -> anyhow::Result<View> {
        let addr = self.hosts[i].addr().to_string();
        let out = self.chorus(i, &["ring", "--node", &addr, "--json"])?;
        if !out.status.success() {
            bail!(
                "ring view of h{i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let id = |p: &Value| -> anyhow::Result<RingPos> {
            p["id"]
                .as_str()
                .context("id")?
                .parse::<RingPos>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        Ok(View {
            id: id(&v)?,
            predecessor: match &v["predecessor"] {
                Value::Null => None,
                p => Some(id(p)?),
            },
            successors: v["successors"]
                .as_array()
                .context("successors")?
                .iter()
                .map(id)
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Every running node's view, asked in parallel.
    pub fn views(&self, hosts: &[usize]) -> Vec<anyhow::Result<View>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|&i| s.spawn(move || self.view(i)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("view thread panicked")))
                .collect()
        })
    }

    /// `Ok` when `hosts` form one consistent ring: each one's successor is
    /// the next id among them and its predecessor the previous one. The
    /// error says what is wrong.
    pub fn consistent(&self, hosts: &[usize]) -> Result<Vec<RingPos>, String> {
        let views: Vec<View> = self
            .views(hosts)
            .into_iter()
            .collect::<anyhow::Result<_>>()
            .map_err(|e| e.to_string())?;
        let mut ids: Vec<RingPos> = views.iter().map(|v| v.id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != views.len() {
            return Err("two hosts report one id".into());
        }
        let n = ids.len();
        let mut wrong = Vec::new();
        for v in &views {
            let k = ids.binary_search(&v.id).map_err(|_| "id vanished")?;
            let succ = ids[(k + 1) % n];
            let pred = ids[(k + n - 1) % n];
            if v.successors.first() != Some(&succ) && n > 1 {
                wrong.push(format!(
                    "{}: successor {:?}, want {}",
                    v.id,
                    v.successors.first(),
                    succ
                ));
            }
            if n > 1 && v.predecessor != Some(pred) {
                wrong.push(format!(
                    "{}: predecessor {:?}, want {}",
                    v.id, v.predecessor, pred
                ));
            }
        }
        if wrong.is_empty() {
            Ok(ids)
        } else {
            Err(format!(
                "{} wrong of {n}: {}",
                wrong.len(),
                wrong.join("; ")
            ))
        }
    }

    /// Waits up to `limit` for `hosts` to form one consistent ring; returns
    /// the time it took and the ids, or the last inconsistency seen.
    pub fn wait_consistent(
        &self,
        hosts: &[usize],
        limit: Duration,
    ) -> anyhow::Result<(Duration, Vec<RingPos>)> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match self.consistent(hosts) {
                Ok(ids) => return Ok((start.elapsed(), ids)),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!(
            "no consistent ring of {} hosts after {limit:?}: {last}",
            hosts.len()
        )
    }

    /// Runs `n` lookups of keys drawn from `seed`, from hosts in turn, and
    /// checks each owner against the oracle over `ids`. Returns the hop counts.
    pub fn check_lookups(
        &self,
        hosts: &[usize],
        ids: &[RingPos],
        n: u64,
        seed: u64,
    ) -> anyhow::Result<Vec<u64>> {
        let mut rng = chorus_core::rng::Rng::new(seed);
        let keys: Vec<(usize, RingPos)> = (0..n)
            .map(|k| (hosts[k as usize % hosts.len()], RingPos(rng.next_u64())))
            .collect();
        let results: Vec<anyhow::Result<u64>> = std::thread::scope(|s| {
            keys.chunks(keys.len().div_ceil(8).max(1))
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|&(h, key)| self.lookup(h, key, ids))
                            .collect::<Vec<_>>()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .flat_map(|t| t.join().unwrap_or_default())
                .collect()
        });
        if results.len() as u64 != n {
            bail!("{} of {n} lookups ran", results.len());
        }
        results.into_iter().collect()
    }

    fn lookup(&self, h: usize, key: RingPos, ids: &[RingPos]) -> anyhow::Result<u64> {
        let addr = self.hosts[h].addr().to_string();
        let out = self.chorus(h, &["lookup", "--node", &addr, &key.to_string(), "--json"])?;
        if !out.status.success() {
            bail!(
                "lookup {key} at h{h}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let owner: RingPos = v["owner"]["id"]
            .as_str()
            .context("owner")?
            .parse()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let want = true_owner(ids, key);
        if owner != want {
            bail!("lookup {key} at h{h}: owner {owner}, the oracle says {want}");
        }
        v["hops"].as_u64().context("hops")
    }

    fn switch(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut v = vec!["-n", self.switch.as_str()];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// Cuts the trunk: side A and side B cannot reach each other.
    pub fn partition(&self) -> anyhow::Result<()> {
        self.switch(&["link", "set", "ta", "down"])
    }

    /// Restores the trunk.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.switch(&["link", "set", "ta", "up"])
    }

    /// Unplugs host i's cable (its node keeps running, alone).
    pub fn unplug(&self, i: usize) -> anyhow::Result<()> {
        self.switch(&["link", "set", &format!("p{i}"), "down"])
    }

    /// Plugs host i's cable back in.
    pub fn plug(&self, i: usize) -> anyhow::Result<()> {
        self.switch(&["link", "set", &format!("p{i}"), "up"])
    }

    /// The hosts on `side`.
    pub fn side(&self, side: Side) -> Vec<usize> {
        self.hosts
            .iter()
            .filter(|h| h.side == side)
            .map(|h| h.index)
            .collect()
    }

    /// Every host's index.
    pub fn all(&self) -> Vec<usize> {
        (0..self.hosts.len()).collect()
    }

    /// The tail of host i's node log (for failure messages).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.hosts[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A path in the test directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Every node process that already exited (a crash), with its status.
    pub fn exited(&mut self) -> Vec<(usize, String)> {
        let mut dead = Vec::new();
        for h in &mut self.hosts {
            if let Some(child) = h.node.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                dead.push((h.index, status.to_string()));
            }
        }
        dead
    }
}

/// What one node says of its place in the ring.
#[derive(Clone, Debug)]
pub struct View {
    /// Its id.
    pub id: RingPos,
    /// Its predecessor's id.
    pub predecessor: Option<RingPos>,
    /// Its successors' ids, nearest first.
    pub successors: Vec<RingPos>,
}

/// Stops a node: SIGTERM, then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Net {
    fn drop(&mut self) {
        // Signal all first, so that they leave in parallel.
        for h in &mut self.hosts {
            if let Some(c) = h.node.as_ref() {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
            }
        }
        for h in &mut self.hosts {
            if let Some(mut c) = h.node.take() {
                stop(&mut c);
            }
        }
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// Removes the namespaces (and kills the processes in them) that an earlier
/// test process left behind when it was killed before its drops ran.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.split('-');
        if parts.next() != Some("chorus") {
            continue;
        }
        let Some(pid) = parts.nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", p]).status();
            }
        }
        let _ = ip(&["netns", "del", name]);
    }
}

/// Writes `inputs` as files `t000`, `t001`, … in `dir`.
pub fn write_inputs(dir: &Path, inputs: &[Vec<u8>]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, bytes) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("t{i:03}")), bytes)?;
    }
    Ok(())
}
