#!/usr/bin/env bash
# Tools for the security checks: cargo-fuzz (fuzz targets under fuzz/).
# Idempotent. The fuzz targets build on stable with `-s none` or on nightly
# with a sanitizer (see docs/CONFORMANCE.md).
set -euo pipefail
# Pinned: the version the runs in docs/CONFORMANCE.md used, known to build
# with the project's toolchain.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
cargo fuzz --version
