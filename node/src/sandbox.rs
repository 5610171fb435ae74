//! The WebAssembly sandbox (filled in by the sandbox work).
