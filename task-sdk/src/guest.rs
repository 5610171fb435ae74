//! Helpers for task authors (filled in by the sandbox work).
