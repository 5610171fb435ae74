//! The sandbox against hostile modules, its determinism, its limits and its
//! module cache; and signed bundles end to end. Every hostile module must end
//! with the right named outcome, in bounded time, with the process alive.
//!
//! Run: `cargo test --release -p chorus-tests --test sandbox`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_node::sandbox::{
    DeterministicRng, Engine, EngineConfig, FIXED_MONOTONIC_NS, FIXED_WALL_CLOCK, Instrumentation,
    Limits, Outcome, SandboxError, TaskReport, TaskSpec, TrapCode,
};
use chorus_sdk::bundle::{Bundle, BundleError, Manifest};
use chorus_sdk::identity::Identity;

/// Imports and a `print(ptr, len)` helper shared by the hand-written modules.
const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Writes memory[ptr..ptr+len] to stdout; iovec at 0..8, nwritten at 8..12.
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;

/// A WASI command module whose `_start` body is `body` (plus extra items).
fn command(items: &str, body: &str) -> Vec<u8> {
    let text = format!("(module {PRELUDE} {items} (func (export \"_start\") {body}))");
    wat::parse_str(&text).expect("test module is valid wat")
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        slots: 2,
        epoch_tick: Duration::from_millis(5),
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn limits() -> Limits {
    Limits {
        wall_ms: 5_000,
        fuel: 1_000_000_000,
        ..Limits::default()
    }
}

fn run_with(engine: &Engine, module: &[u8], spec: TaskSpec) -> TaskReport {
    engine
        .run_module_blocking(module, spec)
        .expect("task not refused")
}

fn run(module: &[u8], limits: Limits) -> TaskReport {
    run_with(
        &engine(),
        module,
        TaskSpec {
            limits,
            ..TaskSpec::default()
        },
    )
}

/// Runs `f` and checks it took less than `max`.
fn bounded<T>(max: Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took < max, "took {took:?}, more than {max:?}");
    out
}

// ---------------------------------------------------------------------------
// Hostile modules.

#[test]
fn infinite_loop_times_out_without_verdict() {
    let m = command("", "(loop $l (br $l))");
    let mut l = limits();
    l.wall_ms = 200;
    l.fuel = EngineConfig::default_ceiling().fuel;
    let r = bounded(Duration::from_secs(3), || run(&m, Limits { ..l }));
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(!r.outcome.is_verdict());
    assert_eq!(r.digest(), None);
    assert!(
        r.wall >= Duration::from_millis(200),
        "stopped early: {:?}",
        r.wall
    );
}

#[test]
fn a_loop_of_host_calls_still_times_out() {
    // poll_oneoff on virtual time in a loop: the epoch check on the back-edge fires.
    let m = command(
        "",
        r#"(i32.store8 (i32.const 1008) (i32.const 0))
           (loop $l
             (drop (call $poll_oneoff (i32.const 1000) (i32.const 2000) (i32.const 1) (i32.const 3000)))
             (br $l))"#,
    );
    let mut l = limits();
    l.wall_ms = 100;
    l.fuel = EngineConfig::default_ceiling().fuel;
    let r = bounded(Duration::from_secs(3), || run(&m, l));
    assert_eq!(r.outcome, Outcome::Timeout);
}

#[test]
fn infinite_loop_runs_out_of_fuel_deterministically() {
    let m = command("", "(loop $l (br $l))");
    let mut l = limits();
    l.fuel = 5_000_000;
    let a = bounded(Duration::from_secs(3), || run(&m, l));
    let b = run(&m, l);
    assert_eq!(a.outcome, Outcome::FuelExhausted);
    assert!(a.outcome.is_verdict());
    assert_eq!(a.fuel_used, 5_000_000);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn memory_grow_to_4_gib_hits_the_memory_limit() {
    // One grow of 65535 pages (4 GiB - 64 KiB more) ...
    let m = command("", "(drop (memory.grow (i32.const 65535)))");
    let r = bounded(Duration::from_secs(3), || run(&m, limits()));
    assert_eq!(r.outcome, Outcome::MemoryLimit);
    assert!(r.outcome.is_verdict());
    // ... and page by page until refused.
    let m = command(
        "",
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))",
    );
    let mut l = limits();
    l.memory_bytes = 16 << 20;
    let r = bounded(Duration::from_secs(3), || run(&m, l));
    assert_eq!(r.outcome, Outcome::MemoryLimit);
    // A module whose initial memory is over the limit does not even start.
    let big = wat::parse_str(r#"(module (memory 1000) (func (export "_start")))"#).expect("wat");
    assert_eq!(run(&big, l).outcome, Outcome::MemoryLimit);
    // Too many memories, or a table over its element limit.
    let many = wat::parse_str(
        r#"(module (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (func (export "_start")))"#,
    )
    .expect("wat");
    assert_eq!(run(&many, limits()).outcome, Outcome::MemoryLimit);
    let on_demand = Engine::new(EngineConfig {
        pooling: false,
        slots: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let spec = TaskSpec {
        limits: limits(),
        ..TaskSpec::default()
    };
    assert_eq!(
        run_with(&on_demand, &many, spec.clone()).outcome,
        Outcome::MemoryLimit
    );
    // Past the fixed per-module maximum: invalid, with or without pooling.
    let too_many = wat::parse_str(format!(
        "(module {} (func (export \"_start\")))",
        "(memory 1) ".repeat(17)
    ))
    .expect("wat");
    assert!(matches!(
        run(&too_many, limits()).outcome,
        Outcome::InvalidModule(_)
    ));
    assert!(matches!(
        run_with(&on_demand, &too_many, spec).outcome,
        Outcome::InvalidModule(_)
    ));
    let table =
        wat::parse_str(r#"(module (table 200000 funcref) (func (export "_start")))"#).expect("wat");
    assert_eq!(run(&table, limits()).outcome, Outcome::MemoryLimit);
    let grow = wat::parse_str(
        r#"(module (table 1 funcref)
             (func (export "_start") (drop (table.grow (ref.null func) (i32.const 1000000)))))"#,
    )
    .expect("wat");
    assert_eq!(run(&grow, limits()).outcome, Outcome::MemoryLimit);
}

#[test]
fn unbounded_recursion_is_a_stack_overflow_without_verdict() {
    let m = command("(func $f (call $f))", "(call $f)");
    let r = bounded(Duration::from_secs(3), || run(&m, limits()));
    assert_eq!(r.outcome, Outcome::Trap(TrapCode::StackOverflow));
    assert!(!r.outcome.is_verdict());
    assert_eq!(r.digest(), None);
}

#[test]
fn stdout_flood_is_output_too_large() {
    // Writes 64 KiB of memory to stdout forever.
    let m = command(
        "",
        "(loop $l (call $print (i32.const 0) (i32.const 65536)) (br $l))",
    );
    let mut l = limits();
    l.stdout_bytes = 1 << 20;
    let r = bounded(Duration::from_secs(3), || run(&m, l));
    assert_eq!(r.outcome, Outcome::OutputTooLarge);
    assert!(r.outcome.is_verdict());
    assert!(r.stdout.len() <= 1 << 20);
    // stderr has its own cap.
    let m = command(
        "",
        "(i32.store (i32.const 0) (i32.const 0)) (i32.store (i32.const 4) (i32.const 65536))
         (loop $l (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8))) (br $l))",
    );
    let r = bounded(Duration::from_secs(3), || run(&m, limits()));
    assert_eq!(r.outcome, Outcome::OutputTooLarge);
    assert!(r.stderr.len() as u64 <= limits().stderr_bytes);
}

#[test]
fn traps_are_named_by_code() {
    let r = run(&command("", "unreachable"), limits());
    assert_eq!(r.outcome, Outcome::Trap(TrapCode::Unreachable));
    assert!(r.outcome.is_verdict());
    let r = run(
        &command("", "(drop (i32.div_u (i32.const 1) (i32.const 0)))"),
        limits(),
    );
    assert_eq!(r.outcome, Outcome::Trap(TrapCode::IntegerDivisionByZero));
    let r = run(
        &command("", "(drop (i32.load (i32.const 0x7fffffff)))"),
        limits(),
    );
    assert_eq!(r.outcome, Outcome::Trap(TrapCode::MemoryOutOfBounds));
}

#[test]
fn bad_pointers_to_wasi_are_a_deterministic_errno() {
    // Out of bounds, straddling the end of memory, malformed flags: the call
    // fails with an errno (EFAULT, 21, for memory the guest does not have)
    // and the task goes on, the same way on every run.
    for (body, want) in [
        (
            "(call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 65536))",
            Some(21u32),
        ),
        (
            "(call $fd_write (i32.const 1) (i32.const 65532) (i32.const 4) (i32.const 8))",
            Some(21),
        ),
        (
            "(call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
               (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 65535))",
            None,
        ),
    ] {
        let m = command(
            "",
            &format!(
                "(i32.store (i32.const 500) {body}) (call $print (i32.const 500) (i32.const 4))"
            ),
        );
        let a = run(&m, limits());
        let b = run(&m, limits());
        assert_eq!(a.outcome, Outcome::Ok, "{body}");
        assert_eq!((&a.stdout, a.fuel_used), (&b.stdout, b.fuel_used), "{body}");
        let errno = u32::from_le_bytes(a.stdout[..4].try_into().unwrap());
        assert_ne!(errno, 0, "{body}");
        if let Some(want) = want {
            assert_eq!(errno, want, "{body}");
        }
    }
}

#[test]
fn proc_exit_3_is_exit_3_and_keeps_output() {
    let m = command(
        "(data (i32.const 100) \"bye\")",
        "(call $print (i32.const 100) (i32.const 3)) (call $proc_exit (i32.const 3))",
    );
    let r = run(&m, limits());
    assert_eq!(r.outcome, Outcome::Exit(3));
    assert!(r.outcome.is_verdict());
    assert_eq!(r.stdout, b"bye");
    // exit(0) is success; any other code is the task's, even outside 0..126.
    let r = run(&command("", "(call $proc_exit (i32.const 0))"), limits());
    assert_eq!(r.outcome, Outcome::Ok);
    let r = run(&command("", "(call $proc_exit (i32.const 200))"), limits());
    assert_eq!(r.outcome, Outcome::Exit(200));
}

#[test]
fn no_preopens_no_files_no_environment() {
    // Byte 200: errno of fd_prestat_get(3); byte 201: errno of path_open of
    // "/etc/passwd" from fd 3; byte 202: errno of path_open from fd 0 (stdin);
    // byte 203: environment variable count.
    let m = command(
        "(data (i32.const 300) \"/etc/passwd\")",
        r#"
        (i32.store8 (i32.const 200) (call $fd_prestat_get (i32.const 3) (i32.const 400)))
        (i32.store8 (i32.const 201)
          (call $path_open (i32.const 3) (i32.const 0) (i32.const 300) (i32.const 11)
                           (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 408)))
        (i32.store8 (i32.const 202)
          (call $path_open (i32.const 0) (i32.const 0) (i32.const 300) (i32.const 11)
                           (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 408)))
        (drop (call $environ_sizes_get (i32.const 412) (i32.const 416)))
        (i32.store8 (i32.const 203) (i32.load (i32.const 412)))
        (call $print (i32.const 200) (i32.const 4))
        "#,
    );
    let r = run(&m, limits());
    assert_eq!(
        r.outcome,
        Outcome::Ok,
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    const EBADF: u8 = 8;
    assert_eq!(r.stdout[0], EBADF, "fd 3 must not be a preopened directory");
    assert_ne!(r.stdout[1], 0, "path_open of an absolute path must fail");
    assert_ne!(r.stdout[2], 0, "path_open from stdin must fail");
    assert_eq!(r.stdout[3], 0, "no environment variables");
}

#[test]
fn invalid_modules_are_refused_with_a_reason() {
    let e = engine();
    for bytes in [
        b"definitely not wasm".to_vec(),
        b"\0asm\x01\0\0\0\x01\xff".to_vec(),
        Vec::new(),
    ] {
        let err = e
            .module(&bytes, &limits())
            .expect_err("invalid module accepted");
        assert!(matches!(err, SandboxError::InvalidModule(_)), "{err}");
        let r = run_with(
            &e,
            &bytes,
            TaskSpec {
                limits: limits(),
                ..TaskSpec::default()
            },
        );
        assert!(matches!(r.outcome, Outcome::InvalidModule(_)));
        assert!(r.outcome.is_verdict());
    }
    // Text format is not accepted as a module: only binary.
    let text = b"(module (func (export \"_start\")))";
    assert!(matches!(
        run(text, limits()).outcome,
        Outcome::InvalidModule(_)
    ));
    // Imports outside WASI preview 1, or no _start: not a task.
    let foreign =
        wat::parse_str(r#"(module (import "env" "spawn" (func)) (func (export "_start")))"#)
            .expect("wat");
    assert!(matches!(
        run(&foreign, limits()).outcome,
        Outcome::InvalidModule(_)
    ));
    let library = wat::parse_str(r#"(module (func (export "main")))"#).expect("wat");
    assert!(matches!(
        run(&library, limits()).outcome,
        Outcome::InvalidModule(_)
    ));
    // An invalid module is compiled once, then refused from memory.
    let compiled = e.cache_stats().compiled;
    for _ in 0..10 {
        assert!(matches!(
            e.module(&foreign, &limits()),
            Err(SandboxError::InvalidModule(_))
        ));
    }
    assert!(e.cache_stats().compiled <= compiled + 1);
}

#[test]
fn module_over_the_size_cap_is_invalid() {
    let m = command(
        "(data (i32.const 0) \"0123456789abcdef0123456789abcdef\")",
        "",
    );
    let mut l = limits();
    l.module_bytes = m.len() as u64 - 1;
    match run(&m, l).outcome {
        Outcome::InvalidModule(why) => assert!(why.contains("cap"), "{why}"),
        other => panic!("expected InvalidModule, got {other}"),
    }
    l.module_bytes = m.len() as u64;
    assert_eq!(run(&m, l).outcome, Outcome::Ok);
}

#[test]
fn input_over_its_cap_and_limits_over_the_ceiling() {
    let e = engine();
    let m = command("", "");
    let mut l = limits();
    l.input_bytes = 10;
    let r = run_with(
        &e,
        &m,
        TaskSpec {
            input: vec![0; 11],
            limits: l,
            ..TaskSpec::default()
        },
    );
    assert_eq!(r.outcome, Outcome::InputTooLarge);
    let mut l = limits();
    l.memory_bytes = e.config().ceiling.memory_bytes + 1;
    let err = e
        .run_module_blocking(
            &m,
            TaskSpec {
                limits: l,
                ..TaskSpec::default()
            },
        )
        .expect_err("limits above the ceiling must be refused");
    assert!(
        matches!(err, SandboxError::LimitAboveCeiling("memory_bytes")),
        "{err}"
    );
}

#[test]
fn sleeping_in_poll_oneoff_returns_at_once() {
    // One clock subscription: relative, 1 hour.
    let m = command(
        "",
        r#"
        (i64.store (i32.const 1000) (i64.const 7))          ;; userdata
        (i32.store8 (i32.const 1008) (i32.const 0))         ;; tag: clock
        (i32.store (i32.const 1016) (i32.const 1))          ;; monotonic
        (i64.store (i32.const 1024) (i64.const 3600000000000))
        (drop (call $poll_oneoff (i32.const 1000) (i32.const 2000) (i32.const 1) (i32.const 3000)))
        (call $print (i32.const 2000) (i32.const 8))
        "#,
    );
    let r = bounded(Duration::from_secs(2), || run(&m, limits()));
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.stdout, 7u64.to_le_bytes());
}

#[test]
fn engine_survives_a_hostile_barrage() {
    let e = engine();
    let mut l = limits();
    l.wall_ms = 100;
    l.fuel = 50_000_000;
    l.stdout_bytes = 1 << 16;
    let hostile = [
        command("", "(loop $l (br $l))"),
        command("", "(drop (memory.grow (i32.const 65535)))"),
        command("(func $f (call $f))", "(call $f)"),
        command(
            "",
            "(loop $l (call $print (i32.const 0) (i32.const 65536)) (br $l))",
        ),
        command("", "unreachable"),
        b"garbage".to_vec(),
    ];
    for _ in 0..3 {
        for m in &hostile {
            let r = run_with(
                &e,
                m,
                TaskSpec {
                    limits: l,
                    ..TaskSpec::default()
                },
            );
            assert!(!r.outcome.is_ok());
        }
    }
    let ok = command(
        "(data (i32.const 100) \"alive\")",
        "(call $print (i32.const 100) (i32.const 5))",
    );
    let r = run_with(
        &e,
        &ok,
        TaskSpec {
            limits: l,
            ..TaskSpec::default()
        },
    );
    assert_eq!((r.outcome, r.stdout), (Outcome::Ok, b"alive".to_vec()));
}

// ---------------------------------------------------------------------------
// Determinism.

/// Prints realtime ns (8), monotonic ns (8), 32 random bytes, 4 bits of f32 0/0,
/// 4 zero bytes, 8 bits of f64 0/0 (operands loaded from memory so nothing is constant-folded).
fn probe() -> Vec<u8> {
    command(
        "",
        r#"
        (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 104)))
        (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 112)))
        (drop (call $random_get (i32.const 120) (i32.const 32)))
        (f32.store (i32.const 152) (f32.div (f32.load (i32.const 504)) (f32.load (i32.const 504))))
        (i32.store (i32.const 156) (i32.const 0))
        (f64.store (i32.const 160) (f64.div (f64.load (i32.const 504)) (f64.load (i32.const 504))))
        (call $print (i32.const 104) (i32.const 64))
        "#,
    )
}

fn probe_with(engine: &Engine, seed: u64) -> TaskReport {
    let r = run_with(
        engine,
        &probe(),
        TaskSpec {
            seed,
            limits: limits(),
            ..TaskSpec::default()
        },
    );
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.stdout.len(), 64);
    r
}

#[test]
fn clocks_random_and_nans_are_identical_across_runs_and_engines() {
    let a = engine();
    let b = Engine::new(EngineConfig {
        pooling: false,
        slots: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let r1 = probe_with(&a, 42);
    let r2 = probe_with(&a, 42);
    let r3 = probe_with(&b, 42);
    assert_eq!(r1.stdout, r2.stdout);
    assert_eq!(r1.stdout, r3.stdout);
    assert_eq!(r1.fuel_used, r3.fuel_used);
    assert_eq!(r1.digest(), r3.digest());

    let out = &r1.stdout;
    let u64_at = |i: usize| u64::from_le_bytes(out[i..i + 8].try_into().expect("8 bytes"));
    assert_eq!(u64_at(0), FIXED_WALL_CLOCK.as_nanos() as u64);
    assert_eq!(u64_at(8), FIXED_MONOTONIC_NS);
    let mut expected = [0u8; 32];
    DeterministicRng::new(42, 0).fill_bytes(&mut expected);
    assert_eq!(
        &out[16..48],
        &expected,
        "random_get is stream 0 of the seed"
    );
    // Canonical NaNs: f32 0x7fc00000, f64 0x7ff8000000000000.
    assert_eq!(
        u32::from_le_bytes(out[48..52].try_into().expect("4")),
        0x7fc0_0000
    );
    assert_eq!(u64_at(56), 0x7ff8_0000_0000_0000);
}

#[test]
fn different_seeds_give_different_random_bytes() {
    let e = engine();
    let a = probe_with(&e, 1);
    let b = probe_with(&e, 2);
    assert_ne!(a.stdout[16..48], b.stdout[16..48]);
    assert_eq!(
        a.stdout[..16],
        b.stdout[..16],
        "clocks do not depend on the seed"
    );
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn without_nan_canonicalization_the_nan_differs() {
    // The control experiment: shows the probe would see the difference.
    let plain = Engine::new(EngineConfig {
        slots: 1,
        instrumentation: Instrumentation::NONE,
        ..EngineConfig::default()
    })
    .expect("engine");
    let r = probe_with(&plain, 42);
    let bits = u32::from_le_bytes(r.stdout[48..52].try_into().expect("4"));
    assert!(f32::from_bits(bits).is_nan());
    // x86-64 produces the negative default NaN; other CPUs may agree with the canonical one.
    if cfg!(target_arch = "x86_64") {
        assert_eq!(bits, 0xffc0_0000);
    }
}

// ---------------------------------------------------------------------------
// The module cache.

#[test]
fn the_thousandth_task_does_not_compile_again() {
    let e = engine();
    let m = command(
        "(data (i32.const 100) \"x\")",
        "(call $print (i32.const 100) (i32.const 1))",
    );
    let started = Instant::now();
    for seed in 0..1000 {
        let r = run_with(
            &e,
            &m,
            TaskSpec {
                seed,
                limits: limits(),
                ..TaskSpec::default()
            },
        );
        assert_eq!(r.outcome, Outcome::Ok);
    }
    let stats = e.cache_stats();
    assert_eq!(stats.compiled, 1);
    assert_eq!(stats.memory_hits, 999);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn tasks_arriving_together_share_one_compile() {
    let e = engine();
    let m = Arc::new(command("(data (i32.const 100) \"together\")", ""));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (e, m) = (e.clone(), m.clone());
            std::thread::spawn(move || e.module(&m, &limits()).map(|t| t.hash()))
        })
        .collect();
    let hashes: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread").expect("module"))
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(e.cache_stats().compiled, 1);
    assert_eq!(e.cache_stats().memory_hits, 7);
}

#[test]
fn compiled_modules_are_cached_on_disk_by_engine_config() {
    let dir = std::env::temp_dir().join(format!("chorus-sandbox-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = EngineConfig {
        slots: 1,
        ..EngineConfig::with_data_dir(&dir)
    };
    let m = command("", "");
    let first = Engine::new(config.clone()).expect("engine");
    first.module(&m, &limits()).expect("module");
    assert_eq!(first.cache_stats().compiled, 1);
    let cached = std::fs::read_dir(dir.join("modules"))
        .expect("cache dir")
        .count();
    assert_eq!(cached, 1);

    let second = Engine::new(config.clone()).expect("engine");
    let module = second.module(&m, &limits()).expect("module");
    assert_eq!(second.cache_stats().compiled, 0);
    assert_eq!(second.cache_stats().loaded_from_disk, 1);
    let r = second
        .run_blocking(
            &module,
            TaskSpec {
                limits: limits(),
                ..TaskSpec::default()
            },
        )
        .expect("run");
    assert_eq!(r.outcome, Outcome::Ok);

    // The key is stable: every engine with this config finds the file.
    for _ in 0..5 {
        let again = Engine::new(config.clone()).expect("engine");
        again.module(&m, &limits()).expect("module");
        assert_eq!(again.cache_stats().loaded_from_disk, 1);
    }

    // Another configuration (here: no NaN canonicalization) must not reuse it.
    let mut other = config.clone();
    other.instrumentation.nan_canonicalization = false;
    let third = Engine::new(other).expect("engine");
    third.module(&m, &limits()).expect("module");
    assert_eq!(third.cache_stats().compiled, 1);

    // A corrupted cache file is dropped and the module compiled again.
    for entry in std::fs::read_dir(dir.join("modules")).expect("cache dir") {
        std::fs::write(entry.expect("entry").path(), b"corrupt").expect("write");
    }
    let fourth = Engine::new(config).expect("engine");
    fourth.module(&m, &limits()).expect("module");
    assert_eq!(fourth.cache_stats().compiled, 1);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_disk_cache_keeps_recently_used_modules_within_its_bound() {
    let dir = std::env::temp_dir().join(format!("chorus-sandbox-trim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = EngineConfig {
        slots: 1,
        ..EngineConfig::with_data_dir(&dir)
    };
    let cache = dir.join("modules");
    let files = || -> Vec<(std::path::PathBuf, u64)> {
        let mut v: Vec<_> = std::fs::read_dir(&cache)
            .expect("cache dir")
            .map(|e| e.expect("entry"))
            .map(|e| (e.path(), e.metadata().expect("metadata").len()))
            .collect();
        v.sort();
        v
    };
    let modules: Vec<Vec<u8>> = (0..3)
        .map(|i| command(&format!("(data (i32.const 100) \"module {i}\")"), ""))
        .collect();

    // The first module, compiled with no bound, tells the size of one file.
    Engine::new(base.clone())
        .expect("engine")
        .module(&modules[0], &limits())
        .expect("module");
    let first = files();
    assert_eq!(first.len(), 1);
    let (f0, one) = first[0].clone();
    // Room for two compiled modules, not three.
    let config = EngineConfig {
        disk_cache_bytes: 2 * one + one / 2,
        ..base
    };
    Engine::new(config.clone())
        .expect("engine")
        .module(&modules[1], &limits())
        .expect("module");
    let second = files();
    assert_eq!(second.len(), 2);
    let f1 = second
        .iter()
        .map(|(p, _)| p.clone())
        .find(|p| *p != f0)
        .expect("second file");

    // Both look old, module 0 the older; then module 0 is used again (loaded
    // from disk), which makes module 1 the least recently used.
    let now = std::time::SystemTime::now();
    for (path, age) in [(&f0, 7200), (&f1, 3600)] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(now - Duration::from_secs(age))
            .expect("set mtime");
    }
    let reuse = Engine::new(config.clone()).expect("engine");
    reuse.module(&modules[0], &limits()).expect("module");
    assert_eq!(reuse.cache_stats().loaded_from_disk, 1);

    // A third module does not fit beside both: module 1 goes.
    let third = Engine::new(config.clone()).expect("engine");
    third.module(&modules[2], &limits()).expect("module");
    assert_eq!(third.cache_stats().compiled, 1);
    let left = files();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().any(|(p, _)| *p == f0),
        "the recently used module stays"
    );
    assert!(!f1.exists(), "the least recently used module was evicted");
    assert!(left.iter().map(|(_, n)| n).sum::<u64>() <= config.disk_cache_bytes);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_module_runs_only_with_the_stack_it_was_compiled_for() {
    let e = engine();
    let m = command("", "");
    let module = e.module(&m, &limits()).expect("module");
    let mut l = limits();
    l.stack_bytes = 256 << 10;
    let err = e
        .run_blocking(
            &module,
            TaskSpec {
                limits: l,
                ..TaskSpec::default()
            },
        )
        .expect_err("stack mismatch");
    assert!(matches!(err, SandboxError::StackMismatch { .. }));
    let small = e.module(&m, &l).expect("module");
    let r = e
        .run_blocking(
            &small,
            TaskSpec {
                limits: l,
                ..TaskSpec::default()
            },
        )
        .expect("run");
    assert_eq!(r.outcome, Outcome::Ok);
}

#[test]
fn fuel_per_second_is_measured() {
    let speed = engine().fuel_per_second(20_000_000).expect("calibration");
    // Anything from a slow emulator to a very fast core.
    assert!(
        (10_000_000..100_000_000_000).contains(&speed),
        "{speed} fuel/s"
    );
}

// ---------------------------------------------------------------------------
// Async: slots, and the runtime stays responsive while tasks spin.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_in_slots_off_the_async_workers() {
    let e = engine();
    let spin = Arc::<[u8]>::from(command("", "(loop $l (br $l))"));
    let mut l = limits();
    l.wall_ms = 250;
    l.fuel = EngineConfig::default_ceiling().fuel;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (e, spin) = (e.clone(), spin.clone());
        handles.push(tokio::spawn(async move {
            e.run_module(
                spin,
                TaskSpec {
                    limits: l,
                    ..TaskSpec::default()
                },
            )
            .await
        }));
    }
    // The async workers stay free while two slots spin: timers keep firing,
    // and the ticks end long before the second round of tasks does.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unfinished = handles.iter().filter(|h| !h.is_finished()).count();
    assert!(
        unfinished >= 2,
        "the runtime was blocked: only {unfinished} tasks left"
    );
    for h in handles {
        let r = h.await.expect("join").expect("run");
        assert_eq!(r.outcome, Outcome::Timeout);
    }
    // 4 tasks of 250 ms on 2 slots: two rounds.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(e.free_slots(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_of_one_module_share_one_compile() {
    let e = engine();
    let module = e.compile(probe().into(), limits()).await.expect("module");
    let mut handles = Vec::new();
    for seed in 0..32u64 {
        let (e, module) = (e.clone(), module.clone());
        handles.push(tokio::spawn(async move {
            let spec = TaskSpec {
                seed: seed % 4,
                limits: limits(),
                ..TaskSpec::default()
            };
            e.run(&module, spec).await
        }));
    }
    let mut digests = std::collections::HashMap::new();
    for (seed, h) in handles.into_iter().enumerate() {
        let r = h.await.expect("join").expect("run");
        assert_eq!(r.outcome, Outcome::Ok);
        let d = r.digest().expect("verdict");
        // One digest per seed, whichever thread ran it.
        assert_eq!(*digests.entry(seed % 4).or_insert(d), d);
    }
    assert_eq!(
        digests
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        4
    );
    assert_eq!(e.cache_stats().compiled, 1);
}

// ---------------------------------------------------------------------------
// Bundles end to end.

#[test]
fn a_signed_bundle_runs_and_a_tampered_one_is_refused() {
    let submitter = Identity::generate().expect("identity");
    let module = command(
        "(data (i32.const 100) \"ok\")",
        "(call $print (i32.const 100) (i32.const 2))",
    );
    let mut manifest = Manifest::new("hello", "1.0.0", [0; 32]);
    manifest.limits = limits();
    let bundle = Bundle::sign(manifest, module, &submitter).expect("sign");
    let bytes = bundle.encode().expect("encode");

    let received = Bundle::decode(&bytes)
        .and_then(|b| b.verify_as(&bundle.id()))
        .expect("verify");
    let r = run_with(
        &engine(),
        received.module(),
        TaskSpec {
            limits: received.manifest().limits,
            ..TaskSpec::default()
        },
    );
    assert_eq!((r.outcome, r.stdout), (Outcome::Ok, b"ok".to_vec()));

    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x20;
        let verdict = Bundle::decode(&t).and_then(|b| b.verify_as(&bundle.id()));
        assert!(verdict.is_err(), "flipped byte {i} accepted");
    }
    // The module's last byte, specifically: a hash mismatch, named as such.
    let mut t = bytes.clone();
    let module_end = t.len() - 64 - 2;
    t[module_end - 1] ^= 1;
    let err = Bundle::decode(&t)
        .and_then(|b| b.verify_as(&bundle.id()))
        .expect_err("tampered");
    assert!(matches!(err, BundleError::HashMismatch { .. }), "{err}");
}
