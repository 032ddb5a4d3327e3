#!/usr/bin/env bash
# kryoptic token for suitekey: the Rust soft token from crates.io (kryoptic-lib), built once as a
# loadable module from scripts/tokens/kryoptic-module/ and cached under the cargo target
# directory (${CARGO_TARGET_DIR:-target}/kryoptic/); its database is a SQLite file in DIR. No
# daemons.
#
# Usage: scripts/tokens/kryoptic.sh install | start DIR [LABEL] | stop DIR      (see lib.sh)
# `install` builds the module when the cached one is missing (about a minute on 2 cores);
# `start` prints KRYOPTIC_CONF and SUITEKEY_MODULE (kryoptic's C_Initialize fails with
# CKR_ARGUMENTS_BAD without KRYOPTIC_CONF).
set -euo pipefail
readonly PROG=kryoptic.sh
# shellcheck source=scripts/tokens/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly CRATE=$REPO/scripts/tokens/kryoptic-module
CACHE=${CARGO_TARGET_DIR:-$REPO/target}/kryoptic
[[ $CACHE == /* ]] || CACHE=$REPO/$CACHE
readonly CACHE MODULE=$CACHE/libkryoptic_pkcs11.so
# The slot kryoptic's configuration gives the token.
readonly SLOT=42

# A digest of every file of the module crate (names and contents; not a target/ inside it):
# the cached module is rebuilt when any changes.
crate_digest() {
  (
    cd -- "$CRATE" &&
      find . -path ./target -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

# True when the cached module was built from the crate as it is now.
cached() {
  [[ -f $MODULE && -f $MODULE.digest && "$(<"$MODULE.digest")" == "$(crate_digest)" ]]
}

install_module() {
  need_packages opensc libclang-dev libssl-dev libsqlite3-dev pkg-config
  cached && return 0
  ((CHECK_ONLY == 0)) ||
    die "the kryoptic module in $CACHE is missing or older than $CRATE: run scripts/tokens/$PROG install"
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
  mkdir -p -- "$CACHE"
  # One build at a time (parallel test processes may all ask for the module).
  exec 8>"$CACHE/.build.lock"
  flock 8
  cached && return 0
  printf '%s: building the kryoptic PKCS#11 module (once; cached in %s)\n' "$PROG" "$CACHE" >&2
  local log=$CACHE/build.log
  if ! cargo build --release --locked --manifest-path "$CRATE/Cargo.toml" \
    --target-dir "$CACHE/build" >"$log" 2>&1; then
    tail -n 30 -- "$log" >&2
    die "building kryoptic failed (log above, all of it in $log)"
  fi
  cp -f -- "$CACHE/build/release/libkryoptic_pkcs11.so" "$MODULE.tmp"
  mv -f -- "$MODULE.tmp" "$MODULE"
  crate_digest >"$MODULE.digest"
}

# A token kept from an earlier start (DIR/token.sql) is reused; one with another label is never
# overwritten.
start_module() {
  : >"$DIR/setup.log"
  cat >"$DIR/token.conf" <<TOML
[[slots]]
slot = $SLOT
dbtype = "sqlite"
dbargs = "$DIR/token.sql"
TOML
  export KRYOPTIC_CONF=$DIR/token.conf
  if ! token_listed "$MODULE"; then
    local slots
    slots=$(pkcs11-tool --module "$MODULE" --list-token-slots 2>>"$DIR/setup.log") || true
    grep -q '^  token state: *uninitialized' <<<"$slots" ||
      die "$DIR already holds a kryoptic token not labelled '$LABEL': start with its label, or remove $DIR to start over"
    init_token "$MODULE" "$SLOT"
  fi
  printf 'export %s=%q\n' KRYOPTIC_CONF "$KRYOPTIC_CONF" SUITEKEY_MODULE "$MODULE"
}

main "$@"
