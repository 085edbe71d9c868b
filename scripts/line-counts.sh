#!/usr/bin/env bash
# Prints a Markdown table of the non-test lines of every Rust source file
# under crates/*/src (lines before a file's `#[cfg(test)]` module), largest
# first. docs/ARCHITECTURE.md §6 holds its output.
#   scripts/line-counts.sh [MIN_LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
MIN="${1:-0}"
echo "| file | lines (non-test) |"
echo "|---|---:|"
for f in $(git ls-files 'crates/*/src/*.rs' 'crates/*/src/**/*.rs' | grep -v 'tests\.rs$'); do
  n="$(awk '/^#\[cfg\(test\)\]/ { exit } { n++ } END { print n + 0 }' "$f")"
  [ "$n" -ge "$MIN" ] && printf '%s %s\n' "$n" "$f"
done | sort -rn | while read -r n f; do
  printf '| `%s` | %s |\n' "${f#crates/}" "$n"
done
