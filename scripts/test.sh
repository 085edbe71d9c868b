#!/usr/bin/env bash
# Runs every check and every test. Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

step() { printf '\n== %s\n' "$*"; }
step "format";  cargo fmt --all -- --check
step "lint";    cargo clippy --locked --workspace --all-targets -- -D warnings
step "docs";    RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps
step "tests";   cargo test --locked --workspace
step "fuzz";    scripts/fuzz.sh 10

export PRISE_BIN="$PWD/target/debug/prise"
for suite in tests/*/run.sh; do
  [ -e "$suite" ] || continue
  step "$suite"
  bash "$suite"
done
step "all tests passed"
