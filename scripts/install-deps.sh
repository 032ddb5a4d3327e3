#!/usr/bin/env bash
# Installs what suitekey's scripts and tests need, and only what is missing.
#
# Usage: scripts/install-deps.sh [EXTRA_DEBIAN_PACKAGE...]
#
# Debian packages: softhsm2, opensc (pkcs11-tool), p11-kit-modules (p11-kit-proxy.so, the default module), openssl, curl, jq, faketime (clock-skew tests),
# strace (the secrets test holds the agent at exit to read its memory), gcc + libc6-dev (the
# linker rustc calls), python3 + python3-venv (pkilint's virtualenv), and for the shipped extras
# (tests/packaging.rs, scripts/package.sh) man-db + groff-base (man pages rendered), zsh + fish
# (completions tried in their shells) and systemd (`systemd-analyze verify` on the units; no
# service manager is started), plus any extra package named on the command line. `apt-get update` runs
# only when something has to be installed. Runs apt as root directly, else through sudo.
# Also adds the rustfmt and clippy rustup components when they are missing, and installs pkilint
# (PyPI, pinned; the independent RFC 5280 linter tests/keys.rs runs on suitekey's certificates)
# into a virtualenv under the cargo target directory, ${CARGO_TARGET_DIR:-target}/pkilint/, with
# the python3 on PATH (python3 and python3-venv are among the Debian packages for that).
#
# Prints one line (on stderr) per thing it installs; nothing when everything is present.
set -euo pipefail

readonly PACKAGES=(softhsm2 opensc p11-kit-modules openssl curl jq gcc libc6-dev faketime strace python3 python3-venv
  man-db groff-base zsh fish systemd "$@")
readonly COMPONENTS=(rustfmt clippy)
readonly PKILINT_VERSION=0.13.3

die() {
  printf 'install-deps: error: %s\n' "$*" >&2
  exit 1
}

note() {
  printf 'install-deps: %s\n' "$*" >&2
}

# Runs the rustup/cargo checks from the repository root so a rust-toolchain file there applies.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

is_installed() {
  [[ "$(dpkg-query -W -f="\${Status}" "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Sets AS_ROOT to the command prefix that runs a command as root: nothing when we are root, else sudo.
set_as_root() {
  if ((EUID == 0)); then
    AS_ROOT=()
  elif command -v sudo >/dev/null 2>&1; then
    # Without a terminal to type a password on, fail instead of hanging.
    if [[ -t 0 ]]; then AS_ROOT=(sudo --); else AS_ROOT=(sudo -n --); fi
  else
    die "installing ${missing[*]} needs root: run this script as root, or install sudo"
  fi
}

# Runs apt-get quietly; shows its output only when it fails.
apt_quiet() {
  local log
  log=$(mktemp)
  if ! "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "apt-get $1 failed (output above)"
  fi
  rm -f "$log"
}

install_debian_packages() {
  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian and Ubuntu only; install ${PACKAGES[*]} yourself"
  missing=()
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]} > 0)) || return 0
  set_as_root
  for pkg in "${missing[@]}"; do
    note "installing Debian package $pkg"
  done
  apt_quiet update -q
  apt_quiet install -y -q --no-install-recommends "${missing[@]}"
}

install_rust_components() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (>= 1.88) with rustup, see https://rustup.rs"
  if ! command -v rustup >/dev/null 2>&1; then
    # A Rust toolchain not managed by rustup: we can only check.
    cargo fmt --version >/dev/null 2>&1 || die "cargo fmt is missing and rustup is not installed: install rustfmt for your Rust toolchain"
    cargo clippy --version >/dev/null 2>&1 || die "cargo clippy is missing and rustup is not installed: install clippy for your Rust toolchain"
    return 0
  fi
  local installed component log
  installed=$(rustup component list --installed) || die "rustup component list failed: is a default toolchain set? (rustup default stable)"
  for component in "${COMPONENTS[@]}"; do
    grep -qE "^${component}(-|$)" <<<"$installed" && continue
    note "adding rustup component $component"
    log=$(mktemp)
    if ! rustup component add "$component" >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      die "rustup component add $component failed (output above)"
    fi
    rm -f "$log"
  done
}

# pkilint in its own virtualenv (never the system's or pyenv's site-packages), reinstalled only
# when the pinned version is not the one there.
install_pkilint() {
  local venv=${CARGO_TARGET_DIR:-target}/pkilint log
  if [[ -x $venv/bin/lint_pkix_cert ]] &&
    [[ "$("$venv/bin/python" -m pip show pkilint 2>/dev/null | sed -n 's/^Version: //p')" == "$PKILINT_VERSION" ]]; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 not found: install python3 and python3-venv"
  note "installing pkilint $PKILINT_VERSION (PyPI) into $venv"
  log=$(mktemp)
  if ! { python3 -m venv --clear "$venv" &&
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pkilint==$PKILINT_VERSION"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "installing pkilint into $venv failed (output above)"
  fi
  rm -f "$log"
}

missing=()
AS_ROOT=()
install_debian_packages
install_rust_components
install_pkilint
