#!/usr/bin/env bash
# Builds what a user installs, and checks it as installed:
#
# 1. README's `cargo install --locked --path .` line, run as written into a scratch
#    CARGO_INSTALL_ROOT: the installed `suitekey --version` names the checkout's commit.
# 2. The Debian package, target/debian/suitekey_VERSION-1_ARCH.deb, made by cargo-deb from that
#    binary (no second build) with the man pages, completions and systemd units the binary
#    generates into target/deb-assets/. It is unpacked with `dpkg -x` into a scratch root (no
#    change to this machine) and checked there: `suitekey --version`, `man -l` on its pages,
#    its bash completion completing `suitekey to` to `token`, the docs, and
#    `systemd-analyze verify` on its units. `apt-get install --simulate` checks its
#    dependencies resolve (README's `sudo apt install ./target/debian/suitekey_*.deb`, without
#    installing).
# 3. The crate as crates.io would get it: `cargo package --list` holds what the build reads and
#    no tests, scripts or fuzz corpora; `cargo publish --dry-run` builds the packaged sources
#    (whose `--version` says `commit unknown`: no checkout) and stops before uploading.
#
# Usage: scripts/package.sh [--profile release|dev]
#   release (the default) builds the package to ship; dev packages the dev-profile binary that
#   `cargo test` already built (CI: seconds instead of a release build) and runs step 1 with
#   `--debug` added.
# cargo-deb is installed with `cargo install --locked` (pinned, once per machine, into
# ~/.cargo/bin) when missing; man-db, groff-base and systemd come from scripts/install-deps.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly CARGO_DEB_VERSION=3.8.0

die() {
  printf 'package.sh: error: %s\n' "$*" >&2
  exit 1
}

step() {
  printf 'package.sh: %s\n' "$*" >&2
}

profile=release
case "${1:-}" in
  "") ;;
  --profile)
    [[ ${2:-} == release || ${2:-} == dev ]] || die "--profile takes release or dev"
    profile=$2
    ;;
  *) die "usage: scripts/package.sh [--profile release|dev]" ;;
esac

target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$PWD/$target_dir
if [[ $profile == dev ]]; then bin_dir=$target_dir/debug; else bin_dir=$target_dir/release; fi
scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"' EXIT

# The line of README.md that starts with $1 (leading spaces ignored), comment and all: the
# example as a user copies it.
readme_line() {
  local line
  line=$(awk -v prefix="$1" '{ sub(/^ +/, "") } index($0, prefix) == 1 { print; exit }' README.md)
  [[ -n $line ]] || die "README.md has no line starting with '$1'"
  printf '%s\n' "$line"
}

# --- 1. cargo install ------------------------------------------------------------------------
install_line=$(readme_line 'cargo install --locked --path .')
# dev: the same line, its comment dropped, with --debug added.
if [[ $profile == dev ]]; then
  install_line=${install_line%%#*}
  install_line="${install_line%"${install_line##*[! ]}"} --debug"
fi
step "$install_line  (into a scratch CARGO_INSTALL_ROOT)"
CARGO_INSTALL_ROOT=$scratch/cargo sh -c "$install_line" 2>"$scratch/install.log" ||
  die "'$install_line' failed: $(tail -n 20 "$scratch/install.log")"
version=$("$scratch/cargo/bin/suitekey" --version)
commit=$(git rev-parse --short HEAD 2>/dev/null) || commit=unknown
[[ $version =~ ^suitekey\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ $commit(-dirty)?\)$ ]] ||
  die "the installed suitekey --version says '$version', not the checkout's commit $commit"
step "installed: $version"

# --- 2. the Debian package --------------------------------------------------------------------
if [[ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]]; then
  step "installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked, once)"
  cargo install --locked --quiet cargo-deb --version "=$CARGO_DEB_VERSION" 2>"$scratch/cargo-deb.log" ||
    die "cargo install cargo-deb failed: $(tail -n 20 "$scratch/cargo-deb.log")"
fi

# The assets the binary makes, where [package.metadata.deb] in Cargo.toml takes them from.
assets=target/deb-assets
rm -rf -- "$assets"
mkdir -p "$assets/completions" "$assets/systemd/user"
suitekey=$bin_dir/suitekey
"$suitekey" man "$assets/man" >/dev/null
for shell in bash zsh fish; do
  "$suitekey" completions "$shell" >"$assets/completions/$shell"
done
# The user unit runs the packaged binary and points at the packaged docs.
sed -e 's|^ExecStart=%h/\.cargo/bin/suitekey |ExecStart=/usr/bin/suitekey |' \
  -e 's|^Documentation=.*|Documentation=man:suitekey-agent(1) file:/usr/share/doc/suitekey/README.md|' \
  contrib/user/suitekey-agent.service >"$assets/systemd/user/suitekey-agent.service"
grep -q '^ExecStart=/usr/bin/suitekey agent ' "$assets/systemd/user/suitekey-agent.service" ||
  die "contrib/user/suitekey-agent.service: its ExecStart no longer starts with %h/.cargo/bin/suitekey; update package.sh"

# cargo-deb takes the binary from the release directory of the target directory (and refuses
# the dev profile): for dev, a scratch target directory whose release/ holds the dev binary.
deb_target=$target_dir
if [[ $profile == dev ]]; then
  deb_target=$scratch/target
  mkdir -p "$deb_target/release"
  cp "$suitekey" "$deb_target/release/suitekey"
fi
step "cargo deb --no-build (the $profile binary)"
CARGO_TARGET_DIR=$deb_target cargo deb --no-build --locked --fast --output target/debian \
  >"$scratch/deb.path" 2>"$scratch/deb.log" ||
  die "cargo deb failed: $(tail -n 20 "$scratch/deb.log")"
deb=$(tail -n1 "$scratch/deb.path")
[[ -f $deb ]] || die "cargo deb printed '$deb', not a package file"
step "built $deb ($(du -h "$deb" | cut -f1))"

root=$scratch/root
dpkg -x "$deb" "$root"
bin=$root/usr/bin/suitekey
[[ "$("$bin" --version)" == "$version" ]] || die "the packaged binary says '$("$bin" --version)', the installed one '$version'"
man1=$root/usr/share/man/man1
# suitekey.1 and a page per command `suitekey --help` lists (but clap's `help`).
for command in '' $("$bin" --help | sed -n 's/^  \([a-z]\{1,\}\)  .*/\1/p' | grep -vx help); do
  page=suitekey${command:+-$command}.1.gz
  [[ -f $man1/$page ]] || die "the package has no man page $page: $(ls "$man1")"
done
rendered=$(MANWIDTH=80 man -l "$man1/suitekey-token.1.gz" 2>"$scratch/man.err") ||
  die "man -l suitekey-token.1.gz failed: $(cat "$scratch/man.err")"
grep -q '^NAME' <<<"$rendered" && grep -q 'suitekey-token - ' <<<"$rendered" ||
  die "suitekey-token.1.gz renders without its NAME section: $rendered"
[[ ! -s $scratch/man.err ]] || die "man -l suitekey-token.1.gz warned: $(cat "$scratch/man.err")"
completion=$root/usr/share/bash-completion/completions/suitekey
completed=$(bash --norc --noprofile -c '
  source "$1" || exit 9
  COMP_WORDS=(suitekey to) COMP_CWORD=1 COMP_LINE="suitekey to" COMP_POINT=11
  _suitekey suitekey to suitekey
  printf "%s\n" "${COMPREPLY[@]}"' bash "$completion") ||
  die "sourcing the packaged bash completion failed"
[[ $completed == token ]] || die "the packaged bash completion completes 'suitekey to' to '$completed', not 'token'"
for file in usr/share/zsh/vendor-completions/_suitekey usr/share/fish/vendor_completions.d/suitekey.fish \
  usr/share/doc/suitekey/README.md usr/share/doc/suitekey/SECURITY.md usr/share/doc/suitekey/LICENSE \
  usr/share/doc/suitekey/copyright usr/lib/systemd/system/suitekey-agent.service \
  usr/lib/systemd/user/suitekey-agent.service; do
  [[ -s $root/$file ]] || die "the package has no $file"
done
# README's quick start runs the packaged SoftHSM2 set-up script, which finds its template beside it.
[[ -x $root/usr/share/suitekey/softhsm/setup-token.sh && -s $root/usr/share/suitekey/softhsm/softhsm2.conf.in ]] ||
  die "the package has no executable usr/share/suitekey/softhsm/setup-token.sh with its softhsm2.conf.in"
# The units as installed, verified against this machine's systemd (no manager is started): a
# copy whose /usr/bin/suitekey is the unpacked one, and the man pages their Documentation=
# names looked up in the unpacked tree. The user manager wants a runtime directory.
mkdir -p "$scratch/units" "$scratch/run"
chmod 700 "$scratch/run"
for unit in system user; do
  sed "s|/usr/bin/suitekey|$bin|g" "$root/usr/lib/systemd/$unit/suitekey-agent.service" \
    >"$scratch/units/suitekey-agent.service"
  XDG_RUNTIME_DIR=$scratch/run MANPATH=$root/usr/share/man \
    systemd-analyze "--$unit" verify "$scratch/units/suitekey-agent.service" >"$scratch/verify.log" 2>&1 ||
    die "systemd-analyze verify failed on the $unit unit: $(cat "$scratch/verify.log")"
  [[ ! -s $scratch/verify.log ]] || die "systemd-analyze verify warns about the $unit unit: $(cat "$scratch/verify.log")"
done
# The system unit's exposure as `systemd-analyze security` rates it, offline: the figure README
# gives.
score=$(systemd-analyze security --offline=yes "$root/usr/lib/systemd/system/suitekey-agent.service" 2>&1 |
  sed -n 's/.*Overall exposure level for suitekey-agent.service: \([0-9.]*\) .*/\1/p')
[[ -n $score ]] || die "systemd-analyze security gave no exposure level for the system unit"
grep -q "rates it $score, " README.md ||
  die "systemd-analyze security rates the system unit $score, which README.md does not say"
# README's install line, simulated: apt resolves the package's dependencies, installs nothing.
apt_line=$(readme_line 'sudo apt install ./target/debian/suitekey_')
apt_line="apt-get install --simulate -q ${apt_line#sudo apt install }"
sh -c "$apt_line" >"$scratch/apt.log" 2>&1 || die "'$apt_line' failed: $(tail -n 20 "$scratch/apt.log")"
grep -q '^Inst suitekey ' "$scratch/apt.log" || die "'$apt_line' would not install suitekey: $(cat "$scratch/apt.log")"
step "checked as unpacked: --version, man pages, completions, docs, units (system unit's exposure $score)"

# --- 3. the crate as crates.io would get it --------------------------------------------------
cargo package --list --locked --allow-dirty >"$scratch/files" 2>"$scratch/package.log" ||
  die "cargo package --list failed: $(cat "$scratch/package.log")"
for file in Cargo.toml Cargo.lock build.rs src/main.rs src/lib.rs README.md SECURITY.md LICENSE \
  contrib/system/suitekey-agent.service contrib/user/suitekey-agent.service; do
  grep -qx "$file" "$scratch/files" || die "cargo package leaves out $file"
done
if grep -E '^(tests|scripts|fuzz|benches|softhsm|proptest-regressions|\.ci|target)/' "$scratch/files"; then
  die "cargo package takes the files above, which crates.io users do not need"
fi
version_number=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# cargo verifies the package by building it from the packaged sources. Those share the target
# directory's dev artifacts with this checkout (cargo hashes a path package by its path inside
# its own root), so the build script's output last written is the packaged copy's: `--version`
# there says `unknown` (no checkout), and build.rs is touched afterwards so the checkout's next
# build names its commit again.
cargo publish --dry-run --locked --allow-dirty >"$scratch/publish.log" 2>&1 ||
  die "cargo publish --dry-run failed: $(grep -v '^warning: ignoring' "$scratch/publish.log" | tail -n 20)"
touch build.rs
packaged_version=$("$target_dir/debug/suitekey" --version)
[[ $packaged_version == "suitekey $version_number (commit unknown)" ]] ||
  die "built from the packaged sources, suitekey --version says '$packaged_version', not 'suitekey $version_number (commit unknown)'"
step "cargo package: $(wc -l <"$scratch/files") files; cargo publish --dry-run (the packaged sources built) passes"
