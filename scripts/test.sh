#!/usr/bin/env bash
# Runs what CI runs, in the repository root: install-deps, the token modules and the virtual PIV
# card, rustfmt check, clippy (unwrap/expect denied outside tests, see src/lib.rs), the API docs
# (no warnings), tests (the matrix on SoftHSM2, tpm2-pkcs11, kryoptic, and ykcs11 and OpenSC
# over the virtual PIV card included), the packages users install (scripts/package.sh), and
# README's first quick start run as written from the package (scripts/quickstart.sh).
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
# The PKCS#11 modules of the matrix (tests/matrix.rs): their packages, kryoptic's module and the
# virtual PIV card that ykcs11 and OpenSC run on (built once, cached under the cargo target
# directory). A module that cannot be set up fails the run; SUITEKEY_TEST_MODULES=softhsm2
# (comma list) runs fewer locally.
export SUITEKEY_TEST_MODULES=${SUITEKEY_TEST_MODULES:-softhsm2,tpm2,kryoptic,ykcs11,opensc}
IFS=, read -ra modules <<<"$SUITEKEY_TEST_MODULES"
# Printed, since under CI (CI set) tests/matrix.rs fails when one is left out.
printf '==> token modules of the matrix: %s\n' "$SUITEKEY_TEST_MODULES"
for module in "${modules[@]}"; do
  case $module in
    softhsm2 | tpm2 | kryoptic) script=$module.sh ;;
    # Yubico's ykcs11 and OpenSC, over the virtual PIV card (one pcscd per machine: as root).
    ykcs11 | opensc) script=piv.sh ;;
    *)
      printf 'test.sh: SUITEKEY_TEST_MODULES names "%s"; the modules are softhsm2, tpm2, kryoptic, ykcs11, opensc\n' "$module" >&2
      exit 2
      ;;
  esac
  step "token module $module" bash "scripts/tokens/$script" install
done
# The virtual PIV card behind pcscd (tests/piv_card.rs, which fails under CI without it): its
# Debian packages, and the card, built once and cached under the cargo target directory.
step "virtual PIV card" bash scripts/tokens/piv.sh install
step "cargo fmt --all -- --check" cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
# The fuzzing entry points (src/fuzzing.rs) exist only with the `fuzzing` feature (fuzz/ turns
# it on): lint them too, unwrap/expect rules included.
step "cargo clippy --lib --features fuzzing -- -D warnings" cargo clippy --lib --features fuzzing -- -D warnings
# Broken or private intra-doc links and stray HTML in doc comments fail the run.
step "cargo doc --no-deps (warnings denied)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
step "cargo test${*:+ $*}" cargo test "$@"
# What users install: README's `cargo install --locked --path .` into a scratch root, and the
# Debian package checked as unpacked (scripts/package.sh). The dev profile packages the binary
# `cargo test` built, in seconds; `scripts/package.sh` alone makes the release package.
step "scripts/package.sh --profile dev" bash scripts/package.sh --profile dev
# README's first quick start, line by line as written, from that package: installed with apt,
# used, then removed (scripts/quickstart.sh; root or passwordless sudo, required under CI).
step "scripts/quickstart.sh (README's quick start from the package)" bash scripts/quickstart.sh
