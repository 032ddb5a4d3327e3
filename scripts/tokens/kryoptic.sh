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

install_module() {
  need_packages opensc libclang-dev libssl-dev libsqlite3-dev pkg-config
  build_crate "the kryoptic PKCS#11 module" "$CRATE" "$CACHE" libkryoptic_pkcs11.so "$MODULE"
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
