#!/usr/bin/env bash
# A virtual PIV smart card behind the real smart-card stack, for suitekey's tests: pcscd with a
# reader configuration of its own (one vpcd reader, "Yubico YubiKey Virtual PIV": ykcs11 lists
# readers named "Yubico…", and yubico-piv-tool looks for "YubiKey" by default), and the card
# (scripts/tokens/piv-card: Nitrokey's PIV applet, built once and cached under the cargo target
# directory, ${CARGO_TARGET_DIR:-target}/piv-card/), its state in DIR/card. Clients use Yubico's
# libykcs11.so or OpenSC's opensc-pkcs11.so, and yubico-piv-tool.
#
# Usage: scripts/tokens/piv.sh install | start DIR | stop DIR      (see lib.sh)
# `start` prints SUITEKEY_MODULE (ykcs11), SUITEKEY_YKCS11_MODULE and SUITEKEY_OPENSC_MODULE. The
# reader is "Yubico YubiKey Virtual PIV 00 00" (vpcd adds an empty "… 00 01"). On a new DIR the
# card starts blank and `start` sets, from their factory defaults (PIN 123456, PUK 12345678, the
# well-known 3DES management key), the PIN in DIR/user.pin, the PUK in DIR/so.pin (6 to 8
# characters; 8 random digits unless there) and the management key in DIR/management.key (48
# hex digits, 3DES; random unless there), through yubico-piv-tool's standard input, never argv.
# With PIV_CARD_FACTORY=1 a new card keeps its factory PIN, PUK and management key, as a new
# YubiKey comes (for tests of a first set-up; DIR's files are then not the card's). The card's
# own test knobs (PIV_CARD_TRACE, PIV_CARD_TOUCH_FILE) pass through the environment.
# Keys are made by the caller (yubico-piv-tool, or a PKCS#11 module). A card already in DIR is
# kept, keys and all. A LABEL argument is ignored: each module names the token itself (ykcs11
# "YubiKey PIV #SERIAL", OpenSC the first certificate's common name).
#
# One pcscd per machine: its socket, /run/pcscd/pcscd.comm, is fixed (Debian's pcscd ignores
# PCSCLITE_CSOCK_NAME), so it needs root, and cards of two DIRs cannot run at once. `start` takes
# an exclusive lock on ${SUITEKEY_PCSCD_LOCK:-/tmp/suitekey-pcscd.lock}, waiting up to
# ${SUITEKEY_PCSCD_LOCK_WAIT:-300} s for another DIR's card to stop (so parallel tests
# serialize); a process of DIR (N-lock.pid) holds it until `stop DIR`. A pcscd that is not one of
# ours (the system's, or systemd's pcscd.socket) makes `start` fail, naming it. With
# SUITEKEY_TOKEN_OWNER_PID set, everything also stops when that process ends.
set -euo pipefail
readonly PROG=piv.sh
# shellcheck source=scripts/tokens/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly PACKAGES=(opensc pcscd vsmartcard-vpcd ykcs11 yubico-piv-tool)
readonly CRATE=$REPO/scripts/tokens/piv-card
CACHE=${CARGO_TARGET_DIR:-$REPO/target}/piv-card
[[ $CACHE == /* ]] || CACHE=$REPO/$CACHE
readonly CACHE CARD=$CACHE/piv-card
# pcscd names the reader FRIENDLYNAME plus " 00 00" (slot 0 of reader 0).
readonly READER_NAME="Yubico YubiKey Virtual PIV"
readonly READER="$READER_NAME 00 00"
readonly PCSCD_SOCKET=/run/pcscd/pcscd.comm PCSCD_PIDFILE=/run/pcscd/pcscd.pid
readonly LOCK=${SUITEKEY_PCSCD_LOCK:-/tmp/suitekey-pcscd.lock}
readonly LOCK_WAIT=${SUITEKEY_PCSCD_LOCK_WAIT:-300}
# vpcd's own default port; the first free pair of ports from there is used.
readonly FIRST_PORT=35963
readonly FACTORY_PIN=123456 FACTORY_PUK=12345678
readonly FACTORY_MANAGEMENT_KEY=010203040506070801020304050607080102030405060708

install_module() {
  need_packages "${PACKAGES[@]}"
  build_crate "the virtual PIV card" "$CRATE" "$CACHE" piv-card "$CARD"
}

module_path() {
  local multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
  printf '/usr/lib/%s/%s' "$multiarch" "$1"
}

# PIV PINs and PUKs are 6 to 8 characters: lib.sh's random PIN files are 8 random digits here.
pin_file() {
  [[ -e $1 ]] && return 0
  local n
  n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
  (
    umask 077
    printf '%08d\n' "$((n % 100000000))" >"$1"
  )
}

# Sets MANAGEMENT_KEY from DIR/management.key (48 hex digits; random unless there).
management_key() {
  local file=$DIR/management.key
  if [[ ! -e $file ]]; then
    (
      umask 077
      od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file"
      printf '\n' >>"$file"
    )
  fi
  IFS= read -r MANAGEMENT_KEY <"$file" || true
  [[ $MANAGEMENT_KEY =~ ^[0-9A-Fa-f]{48}$ ]] ||
    die "$file does not hold a 3DES management key (48 hex digits on its first line)"
}

# PID of the pcscd that owns /run/pcscd, if one runs (its PID file ends with a NUL).
running_pcscd() {
  local pid
  pid=$(tr -d '\0\n' 2>/dev/null <"$PCSCD_PIDFILE") || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && printf '%s' "$pid"
}

# True when something listens on pcscd's socket (systemd's pcscd.socket does without a pcscd).
socket_listened() {
  awk -v path="$PCSCD_SOCKET" '$4 == "00010000" && $8 == path { found = 1 } END { exit !found }' /proc/net/unix
}

# Dies when a pcscd other than ours owns the machine's PC/SC socket: only one can run.
refuse_other_pcscd() {
  local pid cmdline
  if pid=$(running_pcscd); then
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || true
    die "another pcscd runs (PID $pid: ${cmdline:-?}) and only one can run per machine (its socket $PCSCD_SOCKET is fixed): stop it first (the system's: systemctl stop pcscd.socket pcscd; another piv.sh card: scripts/tokens/piv.sh stop ITS_DIR)"
  fi
  if [[ -e $PCSCD_SOCKET ]] && socket_listened; then
    die "$PCSCD_SOCKET is held by another process (systemd's pcscd.socket?), and only one pcscd can run per machine: stop it first (systemctl stop pcscd.socket pcscd)"
  fi
  [[ -w /run || -w /run/pcscd ]] ||
    die "pcscd needs to write /run/pcscd, which only root can: run the tests that use the virtual PIV card as root"
}

# True when TCP port $1 is being listened on (IPv4 or IPv6).
port_listened() {
  local hex
  hex=$(printf '%04X' "$1")
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    awk -v hex="$hex" '$4 == "0A" && toupper(substr($2, length($2) - 3)) == hex { found = 1 } END { exit !found }'
}

# Sets PORT to the first port from FIRST_PORT that is free along with the next one (vpcd listens
# on one port per slot, and it has two).
choose_port() {
  local port
  for ((port = FIRST_PORT; port < FIRST_PORT + 200; port += 2)); do
    if ! port_listened "$port" && ! port_listened "$((port + 1))"; then
      PORT=$port
      return 0
    fi
  done
  die "no two free TCP ports from $FIRST_PORT to $((FIRST_PORT + 200)) for vpcd"
}

# Holds the machine's pcscd lock in a process of DIR (N-lock.pid), waiting for another DIR's card
# to stop; keeps the one a previous start in DIR left.
take_lock() {
  local file
  for file in "$DIR"/*-lock.pid; do
    [[ -f $file ]] || continue
    if alive "$(<"$file")" && ours "$(<"$file")" "$DIR"; then
      LOCK_PIDFILE=$file
      STARTED=${file##*/}
      STARTED=${STARTED%%-*}
      return 0
    fi
    rm -f -- "$file"
  done
  exec 9>>"$LOCK" || die "cannot open the pcscd lock file $LOCK"
  if ! flock -n 9; then
    printf '%s: waiting (up to %s s) for the virtual PIV card of %s to stop: one pcscd per machine\n' \
      "$PROG" "$LOCK_WAIT" "$(head -n 1 -- "$LOCK" 2>/dev/null || echo '?')" >&2
    flock -w "$LOCK_WAIT" 9 ||
      die "the card of $(head -n 1 -- "$LOCK" 2>/dev/null || echo '?') still holds $LOCK after $LOCK_WAIT s: stop it (scripts/tokens/piv.sh stop ITS_DIR), or set SUITEKEY_PCSCD_LOCK_WAIT"
  fi
  printf '%s\n' "$DIR" >"$LOCK"
  # The holder keeps fd 9 (the lock) open; what it runs does not (a sleep outliving it must not
  # keep the lock).
  # shellcheck disable=SC2016 # expanded by the holder's own shell
  daemon lock bash -c 'trap "exit 0" TERM; while :; do sleep 1 9>&- & wait $!; done' piv-lock "$DIR/"
  LOCK_PIDFILE=$DIR/$STARTED-lock.pid
  exec 9>&-
}

write_reader_conf() {
  cat >"$DIR/reader.conf" <<CONF
# The virtual PIV card's reader: vsmartcard's vpcd, listening on 127.0.0.1's and every other
# interface's port $PORT (slot 0) and $((PORT + 1)) (slot 1) for the card to connect.
FRIENDLYNAME "$READER_NAME"
DEVICENAME   /dev/null:$PORT
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    $PORT
CONF
}

card_inserted() {
  opensc-tool --list-readers 2>/dev/null | grep -qE "^[0-9]+ +Yes +.*$READER\$"
}

# yubico-piv-tool on our reader, its secrets on standard input and without a terminal (it then
# reads them from stdin instead of /dev/tty); output to DIR/setup.log.
#   piv_tool WHAT INPUT ARGS...
piv_tool() {
  local what=$1 input=$2
  shift 2
  quietly "$what" setsid yubico-piv-tool --reader="$READER" "$@" <<<"$input"
}

# A blank card gets the PIN, PUK and management key of DIR's files instead of the factory ones.
initialize_card() {
  local pin puk
  pin=$(read_pin "$DIR/user.pin")
  puk=$(read_pin "$DIR/so.pin")
  ((${#pin} >= 6 && ${#pin} <= 8)) || die "$DIR/user.pin: a PIV PIN has 6 to 8 characters"
  ((${#puk} >= 6 && ${#puk} <= 8)) || die "$DIR/so.pin: a PIV PUK has 6 to 8 characters"
  piv_tool "setting the PIN" "$FACTORY_PIN"$'\n'"$pin"$'\n'"$pin" --action=change-pin
  piv_tool "setting the PUK" "$FACTORY_PUK"$'\n'"$puk"$'\n'"$puk" --action=change-puk
  piv_tool "setting the management key" "$FACTORY_MANAGEMENT_KEY"$'\n'"$MANAGEMENT_KEY"$'\n'"$MANAGEMENT_KEY" \
    --key --action=set-mgm-key
  : >"$DIR/card.initialized"
}

start_module() {
  local ykcs11 opensc
  ykcs11=$(module_path libykcs11.so)
  opensc=$(module_path opensc-pkcs11.so)
  [[ -r $ykcs11 && -r $opensc ]] || die "$ykcs11 or $opensc is missing: run scripts/tokens/$PROG install"
  management_key
  [[ -e $DIR/card.initialized || ! -e $DIR/card ]] ||
    die "$DIR/card holds a card whose set-up did not finish: remove $DIR/card to start over"
  : >"$DIR/setup.log"
  # A failed start leaves no process behind (nor the lock held).
  trap 'stop_daemons "$DIR"' EXIT
  take_lock
  stop_daemons "$DIR" "$LOCK_PIDFILE" # a previous start's pcscd and card, if any
  refuse_other_pcscd
  choose_port
  write_reader_conf
  daemon pcscd pcscd --foreground --config "$DIR/reader.conf"
  await pcscd eval '[[ -S $PCSCD_SOCKET && "$(running_pcscd)" == "$(<"$DIR/$STARTED-pcscd.pid")" ]]'
  daemon card "$CARD" --state "$DIR/card" --port "$PORT"
  await card card_inserted
  if [[ ! -e $DIR/card.initialized && ${PIV_CARD_FACTORY:-} == 1 ]]; then
    : >"$DIR/card.initialized"
  fi
  [[ -e $DIR/card.initialized ]] || initialize_card
  watch_owner
  trap - EXIT
  printf 'export %s=%q\n' SUITEKEY_MODULE "$ykcs11" SUITEKEY_YKCS11_MODULE "$ykcs11" \
    SUITEKEY_OPENSC_MODULE "$opensc"
}

main "$@"
