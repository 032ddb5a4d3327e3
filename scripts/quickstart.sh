#!/usr/bin/env bash
# README's first quick start ("Quick start: SoftHSM2 and the emulator"), run literally, as a new
# user on a fresh machine would: its code block's lines, unchanged and in order, in one bash
# session (errexit on) with a new, empty HOME, in a scratch directory that holds the Debian
# package where README's install line looks for it (target/debian/, copied from this checkout's
# build: run scripts/package.sh first). The install line really installs the package (apt), so
# every later line uses /usr/bin/suitekey and /usr/share/suitekey as a user gets them; the
# package is removed again afterwards (also on failure) and the removal checked.
#
# Checked: every line succeeds; the last API call answers the emulator's metadata catalog; the
# emulator the block started has stopped; the package left nothing behind.
#
# It changes this machine (installs, then removes, the package), so it runs only as root or with
# passwordless sudo. Without either it says so and exits 0, unless CI is set (then 1).
#
# Usage: scripts/quickstart.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly checkout=$PWD
readonly MARKER='## Quick start: SoftHSM2 and the emulator'

die() {
  printf 'quickstart.sh: error: %s\n' "$*" >&2
  exit 1
}

say() {
  printf 'quickstart.sh: %s\n' "$*" >&2
}

if ((EUID != 0)) && ! sudo -n true 2>/dev/null; then
  [[ -z ${CI:-} ]] || die "CI is set, but this is neither root nor passwordless sudo: cannot install the package"
  say "skipped: installing the package needs root or passwordless sudo"
  exit 0
fi

shopt -s nullglob
debs=(target/debian/suitekey_*.deb)
((${#debs[@]} == 1)) || die "want exactly one target/debian/suitekey_*.deb (run scripts/package.sh), found ${#debs[@]}"
! dpkg-query -W -f='${Status}' suitekey 2>/dev/null | grep -q 'ok installed' ||
  die "the suitekey package is already installed here: remove it first (sudo apt remove suitekey)"

# The first fenced block after the heading.
block=$(awk -v marker="$MARKER" '
  index($0, marker) == 1 { found = 1; next }
  found && /^```/ { if (inside) exit; inside = 1; next }
  inside { print }' README.md)
[[ -n $block ]] || die "README.md has no code block after '$MARKER'"
head -n1 <<<"$block" | grep -q '^sudo apt install -y ./target/debian/suitekey_\*.deb ' ||
  die "the quick start no longer starts with the package's install line: update this script"

scratch=$(mktemp -d)
emulator_pid_file=$scratch/emulator.pid
cleanup() {
  local status=$?
  if [[ -s $emulator_pid_file ]]; then
    kill "$(<"$emulator_pid_file")" 2>/dev/null || true
  fi
  if dpkg-query -W -f='${Status}' suitekey 2>/dev/null | grep -q 'ok installed'; then
    run_root apt-get remove -y -q suitekey >/dev/null 2>&1 || true
  fi
  rm -rf -- "$scratch"
  exit "$status"
}
trap cleanup EXIT

run_root() {
  if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}

mkdir -p "$scratch/home" "$scratch/work/target/debian" "$scratch/bin"
cp -- "${debs[0]}" "$scratch/work/target/debian/"
# README's `sudo`, for a root shell where sudo itself may not be installed.
if ((EUID == 0)) && ! command -v sudo >/dev/null; then
  printf '#!/bin/sh\nexec "$@"\n' >"$scratch/bin/sudo"
  chmod 755 "$scratch/bin/sudo"
fi

# The block as a script: errexit, and the emulator's pid kept for the cleanup above should a
# line fail before the block's own `kill` (the block's lines themselves are not changed).
{
  printf 'set -e\n'
  printf 'trap '\''[ -n "${EMULATOR:-}" ] && echo "$EMULATOR" > %q'\'' EXIT\n' "$emulator_pid_file"
  printf '%s\n' "$block"
} >"$scratch/quickstart.bash"

say "running README's quick start ($(wc -l <<<"$block") lines) in $scratch/work, HOME=$scratch/home"
status=0
(
  cd "$scratch/work"
  env -i HOME="$scratch/home" PATH="$scratch/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive TERM=dumb \
    timeout 300 bash "$scratch/quickstart.bash" </dev/null >"$scratch/out" 2>"$scratch/err"
) || status=$?
if ((status != 0)); then
  cat -- "$scratch/out" "$scratch/err" >&2
  die "the quick start failed (exit status $status); its output is above"
fi
[[ $(command -v suitekey) == /usr/bin/suitekey ]] || die "the package did not install /usr/bin/suitekey"
grep -q '^{"items":\[.*"name":"customer"' "$scratch/out" ||
  die "the last API call did not answer the metadata catalog: $(tail -c 400 "$scratch/out")"
# The block's last line signals the emulator; it has 5 s to be gone.
[[ -s $emulator_pid_file ]] || die "the quick start left no emulator pid (\$EMULATOR)"
for _ in $(seq 50); do
  kill -0 "$(<"$emulator_pid_file")" 2>/dev/null || break
  sleep 0.1
done
! kill -0 "$(<"$emulator_pid_file")" 2>/dev/null ||
  die "the emulator the quick start started is still running 5 s after its kill line"
say "the quick start got an access token and called the API: $(tail -c 120 "$scratch/out" | tr -d '\n')"

run_root apt-get remove -y -q suitekey >/dev/null
[[ ! -e /usr/bin/suitekey && ! -e /usr/share/suitekey ]] || die "removing the package left /usr/bin/suitekey or /usr/share/suitekey behind"
say "package removed cleanly"
