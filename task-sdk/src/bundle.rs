//! Signed task bundles (filled in by the sandbox work).
