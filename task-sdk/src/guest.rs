//! Helpers for task authors: the least ceremony to write a Chorus task in Rust.
//!
//! A Chorus task is a WASI preview 1 command: its input arrives on stdin, its
//! arguments in argv, its output is what it writes to stdout. These helpers do
//! that plumbing so that a task is one function:
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct In { a: u64, b: u64 }
//! #[derive(Serialize)]
//! struct Out { sum: u64 }
//!
//! fn main() {
//!     chorus_sdk::guest::run(|input: In| -> Result<Out, String> {
//!         input.a.checked_add(input.b).map(|sum| Out { sum }).ok_or_else(|| "overflow".into())
//!     })
//! }
//! ```
//!
//! - [`run`]: typed input and output, both MessagePack (`rmp-serde`; output
//!   structs are encoded as maps with field names, so any language can read them).
//! - [`run_to_bytes`]: typed input, raw output bytes (images, tables, text).
//! - [`run_bytes`]: raw bytes in, raw bytes out.
//!
//! An error returned by the task (or a malformed input) ends the task with
//! exit code 1 and the message on stderr; it never panics. Build the task with
//! `chorus-sdk = { default-features = false, features = ["guest"] }` for
//! `wasm32-wasip1`: this feature pulls in neither tokio nor quinn.
//!
//! Randomness: [`random_bytes`] reads WASI `random_get`, which a Chorus node
//! seeds from the task, so a Monte Carlo task is reproducible on every replica
//! and still different from one task to the next.

use std::fmt::Display;
use std::io::{Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Exit code of a task whose function returned an error or whose input did not decode.
pub const EXIT_TASK_ERROR: i32 = 1;
/// Exit code of a task that could not read its input or write its output.
pub const EXIT_IO_ERROR: i32 = 2;

/// Runs a typed task: decodes stdin as MessagePack into `In`, calls `task`, and
/// writes its `Out` to stdout as MessagePack. Never returns.
///
/// An `Err` from `task` (or an input that does not decode) is written to
/// stderr and ends the task with [`EXIT_TASK_ERROR`].
pub fn run<In, Out, E, F>(task: F) -> !
where
    In: DeserializeOwned,
    Out: Serialize,
    E: Display,
    F: FnOnce(In) -> Result<Out, E>,
{
    run_to_bytes(|input: In| -> Result<Vec<u8>, String> {
        let out = task(input).map_err(|e| e.to_string())?;
        rmp_serde::to_vec_named(&out).map_err(|e| format!("cannot encode the output: {e}"))
    })
}

/// Runs a task with typed (MessagePack) input and raw output bytes. Never returns.
pub fn run_to_bytes<In, E, F>(task: F) -> !
where
    In: DeserializeOwned,
    E: Display,
    F: FnOnce(In) -> Result<Vec<u8>, E>,
{
    run_bytes(|raw: Vec<u8>| -> Result<Vec<u8>, String> {
        let input: In =
            rmp_serde::from_slice(&raw).map_err(|e| format!("cannot decode the input: {e}"))?;
        task(input).map_err(|e| e.to_string())
    })
}

/// Runs a task on raw bytes: all of stdin in, the returned bytes to stdout. Never returns.
pub fn run_bytes<E, F>(task: F) -> !
where
    E: Display,
    F: FnOnce(Vec<u8>) -> Result<Vec<u8>, E>,
{
    let input = match input() {
        Ok(bytes) => bytes,
        Err(e) => fail(EXIT_IO_ERROR, &format!("cannot read the input: {e}")),
    };
    let output = match task(input) {
        Ok(bytes) => bytes,
        Err(e) => fail(EXIT_TASK_ERROR, &e.to_string()),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(&output).and_then(|()| stdout.flush()) {
        fail(EXIT_IO_ERROR, &format!("cannot write the output: {e}"));
    }
    std::process::exit(0)
}

/// All of the task's input (stdin).
pub fn input() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}

/// The task's arguments, without the program name (argv\[0\]).
pub fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

/// Fills `buf` with random bytes from WASI `random_get`.
///
/// Inside a Chorus node these bytes are a deterministic stream seeded from the
/// task, identical on every replica. Outside WebAssembly (native tests) they
/// come from the operating system.
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    sys::random_bytes(buf)
}

/// Writes `message` to stderr and exits with `code`.
fn fail(code: i32, message: &str) -> ! {
    let mut stderr = std::io::stderr().lock();
    // Nothing more can be done if stderr itself fails: the exit code still tells.
    let _ = writeln!(stderr, "error: {message}");
    let _ = stderr.flush();
    std::process::exit(code)
}

#[cfg(target_os = "wasi")]
mod sys {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        /// WASI preview 1 `random_get(buf, buf_len) -> errno`.
        #[link_name = "random_get"]
        fn wasi_random_get(buf: *mut u8, buf_len: usize) -> u16;
    }

    pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
        // SAFETY: `buf` is a valid, writable region of exactly `buf.len()` bytes
        // for the duration of the call; `random_get` writes only inside it.
        let errno = unsafe { wasi_random_get(buf.as_mut_ptr(), buf.len()) };
        if errno == 0 {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "random_get failed: errno {errno}"
            )))
        }
    }
}

#[cfg(not(target_os = "wasi"))]
mod sys {
    use std::io::Read;

    pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
        std::fs::File::open("/dev/urandom")?.read_exact(buf)
    }
}
