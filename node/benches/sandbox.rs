//! Sandbox benchmarks: what determinism costs, what a task costs, what a compile costs.
//!
//! Run: `cargo bench -p chorus-node --bench sandbox` (a plain binary, not a
//! statistics harness: it prints a table of best-of-N timings).
//!
//! - wasm versus native for the Mandelbrot and prime examples (the same kernel
//!   source, compiled into this binary and into the committed `.wasm`), under:
//!   no instrumentation; fuel; fuel + NaN canonicalization; the full
//!   deterministic configuration (fuel + NaN canonicalization + deterministic
//!   relaxed SIMD + epoch interruption);
//! - cost per task from the module cache (instantiate + run an empty task);
//! - first-compile time of each example, and loading it from the disk cache.

#[path = "../../examples/mandelbrot/src/kernel.rs"]
mod mandelbrot;
#[path = "../../examples/primes/src/kernel.rs"]
mod primes;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chorus_node::sandbox::{
    Engine, EngineConfig, Instrumentation, Limits, Outcome, TaskModule, TaskSpec,
};

const MANDELBROT: &[u8] = include_bytes!("../../examples/wasm/mandelbrot.wasm");
const MONTECARLO: &[u8] = include_bytes!("../../examples/wasm/montecarlo.wasm");
const PRIMES: &[u8] = include_bytes!("../../examples/wasm/primes.wasm");
const COLLATZ: &[u8] = include_bytes!("../../examples/wasm/collatz.wasm");

/// Best of this many runs for every timing of a workload.
const RUNS: usize = 5;

fn main() {
    let tile = mandelbrot::Tile {
        width: 320,
        height: 240,
        x0: -2.2,
        y0: 1.2,
        step: 3.2 / 320.0,
        max_iter: 1000,
    };
    let range = primes::Range {
        lo: 0,
        hi: 50_000_000,
    };
    let limits = Limits {
        fuel: 1_000_000_000_000,
        wall_ms: 120_000,
        ..Limits::default()
    };

    println!("# Chorus sandbox benchmark (best of {RUNS} runs)\n");
    let native_mb = best(|| {
        black_box(mandelbrot::render(black_box(&tile)).expect("render"));
    });
    let native_pr = best(|| {
        black_box(primes::count_primes(black_box(&range)).expect("count"));
    });
    println!(
        "native: mandelbrot {} | primes {}\n",
        ms(native_mb),
        ms(native_pr)
    );

    let configs = [
        ("no instrumentation", Instrumentation::NONE),
        (
            "fuel",
            Instrumentation {
                fuel: true,
                ..Instrumentation::NONE
            },
        ),
        (
            "fuel + NaN canonicalization",
            Instrumentation {
                fuel: true,
                nan_canonicalization: true,
                ..Instrumentation::NONE
            },
        ),
        ("full deterministic", Instrumentation::DETERMINISTIC),
    ];
    println!("| configuration | mandelbrot wasm | ratio | primes wasm | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, instrumentation) in configs {
        let engine = engine(instrumentation);
        let mb_input = rmp_serde::to_vec(&tile).expect("encode");
        let pr_input = rmp_serde::to_vec(&range).expect("encode");
        let mb = wasm_time(&engine, MANDELBROT, mb_input, limits);
        let pr = wasm_time(&engine, PRIMES, pr_input, limits);
        println!(
            "| {name} | {} | {:.2}× | {} | {:.2}× |",
            ms(mb),
            ratio(mb, native_mb),
            ms(pr),
            ratio(pr, native_pr)
        );
    }

    println!("\n## Cost per task from the module cache (empty task)\n");
    let empty = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
             (memory (export "memory") 1)
             (func (export "_start")))"#,
    )
    .expect("wat");
    for (name, pooling) in [("pooling allocator", true), ("on-demand allocator", false)] {
        let engine = Engine::new(EngineConfig {
            slots: 1,
            pooling,
            ..EngineConfig::default()
        })
        .expect("engine");
        let module = engine.module(&empty, &Limits::default()).expect("module");
        let per_task = per_task(&engine, &module, 20_000);
        println!(
            "- {name}, full deterministic config, `run_blocking`: {:.1} µs per task",
            per_task.as_secs_f64() * 1e6
        );
    }
    let engine = Engine::new(EngineConfig {
        slots: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let module = engine.module(&empty, &Limits::default()).expect("module");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = 5_000;
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let r = engine.run(&module, TaskSpec::default()).await.expect("run");
            assert_eq!(r.outcome, Outcome::Ok);
        }
    });
    println!(
        "- the async path (`run`: slot semaphore + spawn_blocking), pooling: {:.1} µs per task",
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    println!(
        "- speed (`Engine::fuel_per_second`, the capacity record's measure): {:.2e} fuel/s",
        engine.fuel_per_second(300_000_000).expect("calibration") as f64
    );

    println!("\n## First compile of each example (full deterministic config)\n");
    let dir = std::env::temp_dir().join(format!("chorus-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cached = EngineConfig {
        slots: 1,
        ..EngineConfig::with_data_dir(&dir)
    };
    let first = Engine::new(cached.clone()).expect("engine");
    let second = Engine::new(cached).expect("engine");
    println!("| example | module size | first compile | load from disk cache |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, bytes) in [
        ("mandelbrot", MANDELBROT),
        ("montecarlo", MONTECARLO),
        ("primes", PRIMES),
        ("collatz (C)", COLLATZ),
    ] {
        let started = Instant::now();
        first.module(bytes, &Limits::default()).expect("compile");
        let compile = started.elapsed();
        let started = Instant::now();
        second.module(bytes, &Limits::default()).expect("load");
        let load = started.elapsed();
        println!(
            "| {name} | {} KiB | {} | {} |",
            bytes.len() / 1024,
            ms(compile),
            ms(load)
        );
    }
    assert_eq!(second.cache_stats().compiled, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn engine(instrumentation: Instrumentation) -> Engine {
    Engine::new(EngineConfig {
        slots: 1,
        instrumentation,
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// Best wall time of the task (instantiate + run; the compile is done first).
fn wasm_time(engine: &Engine, bytes: &[u8], input: Vec<u8>, limits: Limits) -> Duration {
    let module = engine.module(bytes, &limits).expect("module");
    let mut best_time = Duration::MAX;
    for _ in 0..RUNS {
        let r = engine
            .run_blocking(
                &module,
                TaskSpec {
                    input: input.clone(),
                    limits,
                    ..TaskSpec::default()
                },
            )
            .expect("run");
        assert_eq!(
            r.outcome,
            Outcome::Ok,
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        best_time = best_time.min(r.wall);
    }
    best_time
}

fn per_task(engine: &Engine, module: &TaskModule, n: u32) -> Duration {
    // Warm up, then time n tasks back to back.
    for _ in 0..1000 {
        engine
            .run_blocking(module, TaskSpec::default())
            .expect("run");
    }
    let started = Instant::now();
    for _ in 0..n {
        let r = engine
            .run_blocking(module, TaskSpec::default())
            .expect("run");
        debug_assert_eq!(r.outcome, Outcome::Ok);
    }
    started.elapsed() / n
}

fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
