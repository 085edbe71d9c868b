#!/usr/bin/env bash
# Tools for the security checks: cargo-fuzz (fuzz targets under fuzz/).
# Idempotent. The fuzz targets build on stable with `-s none` or on nightly
# with a sanitizer (see docs/CONFORMANCE.md).
set -euo pipefail
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version
