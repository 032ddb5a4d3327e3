#!/usr/bin/env bash
# Runs what CI runs, in the repository root: install-deps, rustfmt check, clippy, tests.
#
# Usage: scripts/test.sh [CARGO_TEST_ARGS...]   (e.g. scripts/test.sh -- --nocapture)
# Stops at the first failing step with its exit status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Prints a header, runs the step, and on failure names it and exits with its status.
step() {
  local title=$1 status=0
  shift
  printf '==> %s\n' "$title"
  "$@" || status=$?
  if ((status != 0)); then
    printf 'test.sh: step failed: %s (exit status %d)\n' "$title" "$status" >&2
    exit "$status"
  fi
}

step "install dependencies" bash scripts/install-deps.sh
step "cargo fmt --all -- --check" cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
step "cargo test${*:+ $*}" cargo test "$@"
