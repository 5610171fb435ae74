//! The example tasks (committed `.wasm` files in `examples/wasm/`) against a
//! native Rust reference: the Rust examples' kernels are compiled into this
//! test from the same source files, so wasm and native run the same code.
//!
//! Run: `cargo test --release -p chorus-tests --test examples`.

#[path = "../../examples/mandelbrot/src/kernel.rs"]
mod mandelbrot;
#[path = "../../examples/montecarlo/src/kernel.rs"]
mod montecarlo;
#[path = "../../examples/primes/src/kernel.rs"]
mod primes;

use chorus_node::sandbox::{
    DeterministicRng, Engine, EngineConfig, Limits, Outcome, TaskReport, TaskSpec,
};

const MANDELBROT: &[u8] = include_bytes!("../../examples/wasm/mandelbrot.wasm");
const MONTECARLO: &[u8] = include_bytes!("../../examples/wasm/montecarlo.wasm");
const PRIMES: &[u8] = include_bytes!("../../examples/wasm/primes.wasm");
const COLLATZ: &[u8] = include_bytes!("../../examples/wasm/collatz.wasm");

fn engine() -> Engine {
    Engine::new(EngineConfig {
        slots: 2,
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn run(engine: &Engine, module: &[u8], input: Vec<u8>, args: &[&str], seed: u64) -> TaskReport {
    let spec = TaskSpec {
        input,
        args: args.iter().map(|a| a.to_string()).collect(),
        seed,
        limits: Limits {
            wall_ms: 20_000,
            ..Limits::default()
        },
        ..TaskSpec::default()
    };
    engine
        .run_module_blocking(module, spec)
        .expect("task not refused")
}

fn ok(report: &TaskReport) {
    assert_eq!(
        report.outcome,
        Outcome::Ok,
        "stderr: {}",
        String::from_utf8_lossy(&report.stderr)
    );
}

#[test]
fn mandelbrot_tiles_match_native() {
    let e = engine();
    let tiles = [
        mandelbrot::Tile {
            width: 96,
            height: 64,
            x0: -2.0,
            y0: 1.0,
            step: 3.0 / 96.0,
            max_iter: 300,
        },
        // A deep zoom near the boundary: long orbits, many float operations.
        mandelbrot::Tile {
            width: 40,
            height: 30,
            x0: -0.743_643_887,
            y0: 0.131_825_904,
            step: 1e-9,
            max_iter: 2000,
        },
    ];
    for tile in tiles {
        let input = rmp_serde::to_vec(&tile).expect("encode");
        let r = run(&e, MANDELBROT, input, &[], 0);
        ok(&r);
        let native = mandelbrot::render(&tile).expect("native");
        assert_eq!(
            r.stdout.len(),
            tile.width as usize * tile.height as usize * 3
        );
        assert!(
            r.stdout == native,
            "wasm and native pixels differ for {tile:?}"
        );
    }
}

#[test]
fn mandelbrot_rejects_a_bad_tile_cleanly() {
    let e = engine();
    let tile = mandelbrot::Tile {
        width: 0,
        height: 10,
        x0: 0.0,
        y0: 0.0,
        step: 0.1,
        max_iter: 10,
    };
    let r = run(
        &e,
        MANDELBROT,
        rmp_serde::to_vec(&tile).expect("encode"),
        &[],
        0,
    );
    assert_eq!(r.outcome, Outcome::Exit(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("pixels"));
    // Not MessagePack at all: also a clean exit 1, not a trap.
    let r = run(&e, MANDELBROT, b"\xc1garbage".to_vec(), &[], 0);
    assert_eq!(r.outcome, Outcome::Exit(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot decode the input"));
}

#[test]
fn prime_counts_match_native() {
    let e = engine();
    for (lo, hi) in [
        (0, 2_000_000),
        (1_000_000_000, 1_000_100_000),
        (0, 3),
        (10, 10),
        (24, 29),
    ] {
        let range = primes::Range { lo, hi };
        let r = run(
            &e,
            PRIMES,
            rmp_serde::to_vec(&range).expect("encode"),
            &[],
            0,
        );
        ok(&r);
        let native = primes::count_primes(&range).expect("native");
        let wasm: primes::PrimeCount = rmp_serde::from_slice(&r.stdout).expect("decode output");
        assert_eq!(wasm, native);
        assert_eq!(r.stdout, rmp_serde::to_vec_named(&native).expect("encode"));
    }
    // Known values: pi(2e6) = 148933.
    let r = run(
        &e,
        PRIMES,
        rmp_serde::to_vec(&primes::Range {
            lo: 0,
            hi: 2_000_000,
        })
        .expect("encode"),
        &[],
        0,
    );
    let wasm: primes::PrimeCount = rmp_serde::from_slice(&r.stdout).expect("decode output");
    assert_eq!((wasm.count, wasm.largest), (148_933, Some(1_999_993)));
}

#[test]
fn monte_carlo_is_seeded_by_the_task() {
    let e = engine();
    let job = montecarlo::Job { samples: 200_000 };
    let input = rmp_serde::to_vec(&job).expect("encode");
    let mut outputs = Vec::new();
    for seed in [1u64, 2] {
        let r = run(&e, MONTECARLO, input.clone(), &[], seed);
        ok(&r);
        // The guest seeds its generator with the first 32 bytes of random_get.
        let mut bytes = [0u8; 32];
        DeterministicRng::new(seed, 0).fill_bytes(&mut bytes);
        let native = montecarlo::estimate(&job, bytes).expect("native");
        let wasm: montecarlo::Estimate = rmp_serde::from_slice(&r.stdout).expect("decode output");
        assert_eq!(wasm, native);
        assert!((wasm.pi - std::f64::consts::PI).abs() < 0.02, "{}", wasm.pi);
        // Same seed, another engine: the same bytes.
        let again = run(&engine(), MONTECARLO, input.clone(), &[], seed);
        assert_eq!(again.digest(), r.digest());
        outputs.push(r.stdout);
    }
    assert_ne!(outputs[0], outputs[1], "different seeds, different samples");
}

/// The C example's algorithm, in Rust.
fn collatz_reference(lo: u64, hi: u64) -> String {
    let steps = |mut n: u64| {
        let mut s = 0u64;
        while n != 1 {
            n = if n & 1 == 1 { 3 * n + 1 } else { n >> 1 };
            s += 1;
        }
        s
    };
    let (mut best, mut best_steps) = (lo, steps(lo));
    for n in lo + 1..hi {
        let s = steps(n);
        if s > best_steps {
            (best, best_steps) = (n, s);
        }
    }
    format!("{lo} {hi} {best} {best_steps}\n")
}

#[test]
fn collatz_in_c_matches_native() {
    let e = engine();
    for (lo, hi) in [(1u64, 1_000_000u64), (1_000_000, 1_100_000), (27, 28)] {
        let r = run(
            &e,
            COLLATZ,
            Vec::new(),
            &[&lo.to_string(), &hi.to_string()],
            0,
        );
        ok(&r);
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            collatz_reference(lo, hi)
        );
    }
    let r = run(&e, COLLATZ, Vec::new(), &["5"], 0);
    assert_eq!(r.outcome, Outcome::Exit(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("usage"));
}

#[test]
fn examples_are_deterministic_across_engines_and_fuel_is_counted() {
    let input = rmp_serde::to_vec(&primes::Range { lo: 0, hi: 300_000 }).expect("encode");
    let a = run(&engine(), PRIMES, input.clone(), &[], 9);
    let b = run(
        &Engine::new(EngineConfig {
            slots: 1,
            pooling: false,
            ..EngineConfig::default()
        })
        .expect("engine"),
        PRIMES,
        input,
        &[],
        9,
    );
    ok(&a);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.fuel_used, b.fuel_used);
    assert!(a.fuel_used > 100_000);
}
