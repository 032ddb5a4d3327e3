#!/usr/bin/env bash
# tpm2-pkcs11 token over a software TPM, for suitekey: swtpm, a private D-Bus and tpm2-abrmd (the
# resource manager) all run inside DIR, with no TCP port, so parallel runs do not collide. Keep
# DIR short (its socket paths must stay under ~100 characters).
#
# Usage: scripts/tokens/tpm2.sh install | start DIR [LABEL] | stop DIR      (see lib.sh)
# `start` prints DBUS_SESSION_BUS_ADDRESS, TPM2_PKCS11_TCTI, TPM2TOOLS_TCTI, TPM2_PKCS11_STORE,
# TPM2_PKCS11_LOG_LEVEL and SUITEKEY_MODULE. Set-up takes about 1 s. With SUITEKEY_TOKEN_OWNER_PID
# set, the daemons also stop when that process ends.
set -euo pipefail
readonly PROG=tpm2.sh
# shellcheck source=scripts/tokens/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly PACKAGES=(opensc swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtss2-tcti-swtpm0
  tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools dbus-daemon)

module_path() {
  local multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
  printf '/usr/lib/%s/libtpm2_pkcs11.so.1' "$multiarch"
}

install_module() {
  need_packages "${PACKAGES[@]}"
}

# A session bus of our own, listening on a socket in DIR only.
write_dbus_config() {
  cat >"$DIR/dbus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$DIR/dbus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
XML
}

start_module() {
  local module tcti
  module=$(module_path)
  [[ -r $module ]] || die "tpm2-pkcs11 module $module not found: run $PROG install"
  ((${#DIR} <= 80)) || die "DIR is too long for the socket paths (${#DIR} > 80 characters): $DIR"
  stop_daemons "$DIR" # a previous run's, if any
  # A failed start leaves no daemon behind.
  trap 'stop_daemons "$DIR"' EXIT
  # The TPM's state and the token store of an earlier start are kept: its token and keys too.
  rm -f -- "$DIR"/*.sock "$DIR"/*.sock.ctrl
  mkdir -p -- "$DIR/state" "$DIR/store"
  : >"$DIR/setup.log"

  daemon swtpm swtpm socket --tpm2 --tpmstate "dir=$DIR/state" \
    --server "type=unixio,path=$DIR/swtpm.sock" --ctrl "type=unixio,path=$DIR/swtpm.sock.ctrl" \
    --flags not-need-init,startup-clear
  await swtpm test -S "$DIR/swtpm.sock"

  write_dbus_config
  daemon dbus dbus-daemon --nofork --nopidfile --config-file="$DIR/dbus.conf"
  await dbus test -S "$DIR/dbus.sock"

  export DBUS_SESSION_BUS_ADDRESS="unix:path=$DIR/dbus.sock"
  tcti=tabrmd:bus_type=session
  export TPM2TOOLS_TCTI=$tcti TPM2_PKCS11_TCTI=$tcti TPM2_PKCS11_STORE=$DIR/store TPM2_PKCS11_LOG_LEVEL=0
  daemon abrmd tpm2-abrmd --session --allow-root --flush-all --tcti="swtpm:path=$DIR/swtpm.sock"
  await abrmd tpm2_getrandom 4

  [[ -f $DIR/store/tpm2_pkcs11.sqlite3 ]] ||
    quietly "tpm2_ptool init" tpm2_ptool init --path "$DIR/store"
  token_listed "$module" || add_token

  watch_owner
  trap - EXIT
  printf 'export %s=%q\n' DBUS_SESSION_BUS_ADDRESS "$DBUS_SESSION_BUS_ADDRESS" \
    TPM2_PKCS11_TCTI "$tcti" TPM2TOOLS_TCTI "$tcti" TPM2_PKCS11_STORE "$DIR/store" \
    TPM2_PKCS11_LOG_LEVEL 0 SUITEKEY_MODULE "$module"
}

# The Python that runs tpm2_ptool (its #! line), which has the tpm2_pkcs11 package.
tpm2_ptool_python() {
  local shebang
  IFS= read -r shebang <"$(command -v tpm2_ptool)" || true
  shebang=${shebang#\#!}
  [[ -x ${shebang%% *} ]] || die "cannot tell which Python runs tpm2_ptool ($shebang)"
  printf '%s' "${shebang%% *}"
}

# `tpm2_ptool addtoken`, not C_InitToken: only addtoken checks which PSS salt length the TPM
# uses and records it, and without that record tpm2-pkcs11 offers no RSA-PSS mechanism at all.
# tpm2_ptool takes PINs only as arguments, so they are handed to it inside Python from the
# environment and never appear in a process's argv. Caveat: tpm2_ptool itself then runs
# tpm2-tools (`tpm2_create … -p HEX`) with an auth value derived from each PIN (a SHA-256 of
# the PIN and a salt stored in DIR/store) in their argv, for the moment they run; another local
# user who sees it and can read the store could test PIN guesses against it offline. Set up
# such tokens on a machine without untrusted local users, or with /proc mounted hidepid=2.
add_token() {
  SUITEKEY_SETUP_SO_PIN=$SO_PIN SUITEKEY_SETUP_USER_PIN=$USER_PIN quietly "tpm2_ptool addtoken" \
    "$(tpm2_ptool_python)" -c 'import os, sys
from tpm2_pkcs11.tpm2_ptool import main
sys.argv = ["tpm2_ptool", "addtoken", "--pid=1", "--label", sys.argv[1], "--path", sys.argv[2],
            "--sopin", os.environ.pop("SUITEKEY_SETUP_SO_PIN"),
            "--userpin", os.environ.pop("SUITEKEY_SETUP_USER_PIN")]
sys.exit(main())' "$LABEL" "$DIR/store"
}

main "$@"
