# shellcheck shell=bash
# Helpers shared by scripts/tokens/*.sh (sourced, not run). Callers set PROG before sourcing.
#
# Every token script has the same interface:
#   SCRIPT install            install (or build) what the module needs, when missing
#   SCRIPT start DIR [LABEL]  a token labelled LABEL (default: suitekey) in DIR; daemons, if any,
#                             run with their PIDs in DIR/*.pid; prints the env a client needs as
#                             `export NAME=VALUE` lines (eval-able), SUITEKEY_MODULE among them
#   SCRIPT stop DIR           stop the daemons started in DIR (by PID)
# PINs live in DIR/user.pin and DIR/so.pin (mode 0600; random unless already there) and reach the
# token tools through their environment, never through argv.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
readonly REPO

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() {
  printf 'usage: %s install | start DIR [LABEL] | stop DIR\n' "$PROG"
}

# Installs Debian packages that are missing (through scripts/install-deps.sh).
need_packages() {
  local pkg missing=()
  for pkg in "$@"; do
    [[ "$(dpkg-query -W -f="\${Status}" "$pkg" 2>/dev/null)" == "install ok installed" ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) || bash "$REPO/scripts/install-deps.sh" "${missing[@]}" >&2 ||
    die "could not install ${missing[*]}"
}

# Sets DIR (absolute, created) and LABEL from `start`'s arguments; creates the PIN files.
start_args() {
  (($# >= 1 && $# <= 2)) || {
    usage >&2
    exit 2
  }
  mkdir -p -- "$1" || die "cannot create $1"
  DIR=$(cd -- "$1" && pwd -P)
  LABEL=${2:-suitekey}
  ((${#LABEL} >= 1 && ${#LABEL} <= 32)) || die "token label must be 1 to 32 characters: '$LABEL'"
  pin_file "$DIR/user.pin"
  pin_file "$DIR/so.pin"
  USER_PIN=$(read_pin "$DIR/user.pin")
  SO_PIN=$(read_pin "$DIR/so.pin")
}

# Creates a PIN file of 16 random hex characters unless one is there.
pin_file() {
  [[ -e $1 ]] && return 0
  (
    umask 077
    printf '%s\n' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" >"$1"
  )
}

read_pin() {
  local pin=
  IFS= read -r pin <"$1" || true
  [[ ${#pin} -ge 4 ]] || die "$1 does not hold a PIN (at least 4 characters on its first line)"
  printf '%s' "$pin"
}

# Runs a command with its output kept in DIR/setup.log; on failure shows the log and stops.
#   quietly WHAT COMMAND...
quietly() {
  local what=$1
  shift
  if ! "$@" >>"$DIR/setup.log" 2>&1; then
    tail -n 30 -- "$DIR/setup.log" >&2
    die "$what failed (log above, all of it in $DIR/setup.log)"
  fi
}

# pkcs11-tool's token initialization and user PIN, PINs through the environment.
#   init_token MODULE SLOT
init_token() {
  SUITEKEY_SETUP_SO_PIN=$SO_PIN SUITEKEY_SETUP_USER_PIN=$USER_PIN quietly "initializing token '$LABEL'" \
    pkcs11-tool --module "$1" --slot "$2" --init-token --label "$LABEL" \
    --so-pin env:SUITEKEY_SETUP_SO_PIN --init-pin --pin env:SUITEKEY_SETUP_USER_PIN
}

# Stops the daemons whose PID files (N-NAME.pid) are in $1, last started first, waiting up to
# 5 s for each.
stop_daemons() {
  local dir=$1 file pid i files
  [[ -d $dir ]] || return 0
  files=("$dir"/*.pid)
  for ((i = ${#files[@]} - 1; i >= 0; i--)); do
    file=${files[i]}
    [[ -f $file ]] || continue
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in {1..50}; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f -- "$file"
  done
}

# Dispatches the three subcommands to the caller's install_module and start_module.
main() {
  case ${1:-} in
    install) install_module ;;
    start)
      shift
      install_module
      start_args "$@"
      start_module
      ;;
    stop)
      (($# == 2)) || {
        usage >&2
        exit 2
      }
      stop_daemons "$2"
      ;;
    -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}
