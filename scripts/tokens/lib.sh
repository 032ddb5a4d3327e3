# shellcheck shell=bash
# Helpers shared by scripts/tokens/*.sh (sourced, not run). Callers set PROG before sourcing.
#
# Every token script has the same interface:
#   SCRIPT install            install (or build) what the module needs, when missing
#   SCRIPT start DIR [LABEL]  a token labelled LABEL (default: suitekey) in DIR; daemons, if any,
#                             run with their PIDs in DIR/*.pid; prints the env a client needs as
#                             `export NAME=VALUE` lines (eval-able), SUITEKEY_MODULE among them.
#                             A token already in DIR is kept (daemons restarted), never wiped.
#                             Installs nothing (run `install` first): parallel starts must not
#                             run apt-get at once.
#   SCRIPT stop DIR           stop the daemons started in DIR (by PID, only processes whose
#                             command line names DIR)
# DIR may hold only letters, digits and / . _ - (it goes into config files and socket
# addresses), and is made private (mode 0700, files 0600). PINs live in DIR/user.pin and
# DIR/so.pin (random unless already there) and reach the token tools through their environment,
# never through argv.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
readonly REPO

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() {
  printf 'usage: %s install | start DIR [LABEL] | stop DIR\n' "$PROG"
}

# Installs Debian packages that are missing (through scripts/install-deps.sh); with
# CHECK_ONLY=1 (in `start`) only says which are missing and how to install them.
CHECK_ONLY=0
need_packages() {
  local pkg missing=()
  for pkg in "$@"; do
    [[ "$(dpkg-query -W -f="\${Status}" "$pkg" 2>/dev/null)" == "install ok installed" ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  ((CHECK_ONLY == 0)) || die "missing packages ${missing[*]}: run scripts/tokens/$PROG install"
  bash "$REPO/scripts/install-deps.sh" "${missing[@]}" >&2 || die "could not install ${missing[*]}"
}

# Dies unless PATH is plain: what DIR may contain.
plain_path() {
  [[ $1 =~ ^[A-Za-z0-9/._-]+$ ]] ||
    die "DIR may hold only letters, digits and / . _ - (it goes into config files and socket addresses), not '$1': use a short plain path such as /tmp/suitekey-token"
}

# Sets DIR (absolute, created) and LABEL from `start`'s arguments; creates the PIN files.
start_args() {
  (($# >= 1 && $# <= 2)) || {
    usage >&2
    exit 2
  }
  plain_path "$1"
  mkdir -p -- "$1" || die "cannot create $1"
  DIR=$(cd -- "$1" && pwd -P)
  plain_path "$DIR"
  # Holds PINs, the token's keys and sockets: for our user only.
  chmod 700 -- "$DIR" || die "cannot make $DIR private (chmod 700)"
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

# True when MODULE (with the environment exported so far) shows a token labelled LABEL.
token_listed() {
  local slots
  slots=$(pkcs11-tool --module "$1" --list-token-slots 2>>"$DIR/setup.log") ||
    die "pkcs11-tool cannot list the slots of $1 (see $DIR/setup.log)"
  grep -qxF -- "  token label        : $LABEL" <<<"$slots"
}

# pkcs11-tool's token initialization and user PIN, PINs through the environment.
#   init_token MODULE SLOT
init_token() {
  SUITEKEY_SETUP_SO_PIN=$SO_PIN SUITEKEY_SETUP_USER_PIN=$USER_PIN quietly "initializing token '$LABEL'" \
    pkcs11-tool --module "$1" --slot "$2" --init-token --label "$LABEL" \
    --so-pin env:SUITEKEY_SETUP_SO_PIN --init-pin --pin env:SUITEKEY_SETUP_USER_PIN
}

# True while process $1 runs. A zombie counts as gone: it has exited and only waits for its
# parent to collect its status.
alive() {
  local stat
  { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
  stat=${stat##*) } # the state follows the command name, which may hold spaces and ')'
  [[ ${stat%% *} != Z ]]
}

# True when process $1 is one we started in directory $2: its command line names $2. A PID file
# left by an earlier run may name a PID the system has since given to an unrelated process.
ours() {
  local cmdline
  { cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline"); } 2>/dev/null || return 1
  [[ $cmdline == *"$2/"* ]]
}

# Stops the daemons whose PID files (N-NAME.pid) are in $1, last started first: TERM, up to 5 s
# to exit, then KILL. PID files of processes that are gone or not ours are just removed.
#   stop_daemons DIR [PIDFILE_TO_SKIP]
stop_daemons() {
  local dir=$1 skip=${2:-} file pid i files
  [[ -d $dir ]] || return 0
  files=("$dir"/*.pid)
  for ((i = ${#files[@]} - 1; i >= 0; i--)); do
    file=${files[i]}
    [[ -f $file && $file != "$skip" ]] || continue
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && ours "$pid" "$dir"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in {1..50}; do
        alive "$pid" || break
        sleep 0.1
      done
      if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f -- "$file"
  done
}

# Dispatches the three subcommands to the caller's install_module and start_module.
main() {
  case ${1:-} in
    install) install_module ;;
    start)
      shift
      umask 077
      CHECK_ONLY=1
      install_module
      start_args "$@"
      start_module
      ;;
    stop)
      (($# == 2)) || {
        usage >&2
        exit 2
      }
      # As start named it (symlinks resolved), since that is what the command lines hold.
      local dir
      dir=$(cd -- "$2" 2>/dev/null && pwd -P) || return 0
      stop_daemons "$dir"
      ;;
    -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}
