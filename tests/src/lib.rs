//! Shared helpers for the Chorus integration tests.
