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

# Runs a daemon in the background, detached from our stdout, its PID in DIR/N-NAME.pid (N counts
# up, so that stop_daemons stops them in reverse order).
#   daemon NAME COMMAND...
STARTED=0
daemon() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$DIR/$name.log" 2>&1 &
  STARTED=$((STARTED + 1))
  printf '%s\n' "$!" >"$DIR/$STARTED-$name.pid"
}

# Waits until CHECK succeeds (up to 10 s), else shows the daemon's log and stops.
#   await NAME CHECK...
await() {
  local name=$1 i
  shift
  for ((i = 0; i < 100; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$(<"$DIR/$STARTED-$name.pid")" || break
    sleep 0.1
  done
  cat -- "$DIR/$name.log" >&2 2>/dev/null || true
  stop_daemons "$DIR"
  die "$name did not come up (its log above)"
}

# With SUITEKEY_TOKEN_OWNER_PID set (the tests set their own PID), a watcher stops the daemons
# once that process is gone, even if it was killed before it could stop them itself.
watch_owner() {
  local owner=${SUITEKEY_TOKEN_OWNER_PID:-}
  [[ -n $owner ]] || return 0
  [[ $owner =~ ^[0-9]+$ ]] || die "SUITEKEY_TOKEN_OWNER_PID is not a process id: '$owner'"
  # shellcheck disable=SC2016 # expanded by the watcher's own shell
  daemon watcher bash -c 'PROG=$1; source "$2"; while alive "$3"; do sleep 1; done
    stop_daemons "$4" "$5"; rm -f -- "$5"' \
    _ "$PROG" "$REPO/scripts/tokens/lib.sh" "$owner" "$DIR" "$DIR/$((STARTED + 1))-watcher.pid"
}

# A digest of every file of crate directory $1 (names and contents; not a target/ inside it):
# what a cached build is checked against.
crate_digest() {
  (
    cd -- "$1" &&
      find . -path ./target -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

# True when file $2 is there and was built from crate $1 as it is now.
built_from() {
  [[ -f $2 && -f $2.digest && "$(<"$2.digest")" == "$(crate_digest "$1")" ]]
}

# Builds crate CRATE (release, --locked) in CACHE/build when OUTPUT is missing or older than the
# crate, and copies its ARTIFACT (a file name in the release directory) to OUTPUT; one build at
# a time (parallel test processes may all ask for it). With CHECK_ONLY=1 (in `start`) it only
# says what to run.
#   build_crate WHAT CRATE CACHE ARTIFACT OUTPUT
build_crate() {
  local what=$1 crate=$2 cache=$3 artifact=$4 output=$5
  built_from "$crate" "$output" && return 0
  ((CHECK_ONLY == 0)) ||
    die "$what in $cache is missing or older than $crate: run scripts/tokens/$PROG install"
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
  mkdir -p -- "$cache"
  exec 8>"$cache/.build.lock"
  flock 8
  built_from "$crate" "$output" && return 0
  printf '%s: building %s (once; cached in %s)\n' "$PROG" "$what" "$cache" >&2
  local log=$cache/build.log
  if ! cargo build --release --locked --manifest-path "$crate/Cargo.toml" \
    --target-dir "$cache/build" >"$log" 2>&1; then
    tail -n 30 -- "$log" >&2
    die "building $what failed (log above, all of it in $log)"
  fi
  cp -f -- "$cache/build/release/$artifact" "$output.tmp"
  mv -f -- "$output.tmp" "$output"
  crate_digest "$crate" >"$output.digest"
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
