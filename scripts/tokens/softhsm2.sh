#!/usr/bin/env bash
# SoftHSM2 token for suitekey (the default module): a thin front for softhsm/setup-token.sh with
# the interface every scripts/tokens/*.sh has (see lib.sh). No daemons.
#
# Usage: scripts/tokens/softhsm2.sh install | start DIR [LABEL] | stop DIR
set -euo pipefail
readonly PROG=softhsm2.sh
# shellcheck source=scripts/tokens/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_module() {
  need_packages softhsm2 opensc
}

start_module() {
  bash "$REPO/softhsm/setup-token.sh" "$DIR" "$LABEL"
}

main "$@"
