#!/usr/bin/env bash
# Wall time of one whole `suitekey rotate` (the seven steps: a token and the list with the
# current key, a new key pair and certificate made in the token, the upload, a token and the list
# with the new key, the config rewritten, the old certificate revoked and seen revoked, the old
# key relabelled) per algorithm — ES256 (P-256), ES384 (P-384), PS256 (RSA-3072) — on a SoftHSM2
# token against the built-in emulator's certificate API. Each algorithm gets its own emulator
# and profile and is rotated RUNS times in a row (each rotation replaces the key the previous
# one made); prints the median, the fastest and the slowest.
#
# Usage: scripts/bench-rotate.sh [RUNS]   (rotations per algorithm, at least 3; default 10)
# Uses target/bench-rotate/ (made afresh each time); the emulators are stopped by PID at exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly BENCH_DIR=target/bench-rotate
readonly TOKEN=rotate
readonly RUNS=${1:-10}
readonly CLIENT_ID=161c761646ff925cafb93a8de1b5a06be9be365f994d446c62c02e53dae488cf
readonly ACCOUNT=1234567
readonly MAPPING=role=3,entity=-5,permissions=manage-certificates

die() {
  printf 'bench-rotate.sh: error: %s\n' "$*" >&2
  exit 1
}

if [[ ! $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 3)); then
  die "RUNS must be a number of at least 3, got '$RUNS'"
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

cargo build --release --quiet
readonly SUITEKEY=${CARGO_TARGET_DIR:-target}/release/suitekey
[[ -x $SUITEKEY ]] || die "cargo build did not produce $SUITEKEY"

rm -rf -- "$BENCH_DIR"
setup=$(bash softhsm/setup-token.sh "$BENCH_DIR" "$TOKEN" \
  --key es256:p256 --key es384:p384 --key ps256:rsa3072)
eval "$setup"
export XDG_STATE_HOME=$PWD/$BENCH_DIR/state

pids=()
stop() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop EXIT

# Rotates the key labelled $1 (algorithm $2) RUNS times; prints "ALG median min max" in ms.
bench() {
  local label=$1 alg=$2 dir=$BENCH_DIR/$1
  mkdir -p "$dir"
  local key_uri="pkcs11:token=$TOKEN;object=$label;type=private?module-path=$(uri_encode "$SUITEKEY_MODULE")&pin-source=file:$(uri_encode "$PWD/$BENCH_DIR/user.pin")"
  local kid
  kid=$("$SUITEKEY" cert --key "$key_uri" --alg "$alg" --out "$dir/cert.pem" 2>/dev/null) ||
    die "suitekey cert failed for $label"
  local base
  start_emulator "$dir" "$dir" "client-id=$CLIENT_ID,cert=$dir/cert.pem,account=$ACCOUNT,$MAPPING"
  cat >"$dir/config.toml" <<TOML
[profiles.$label]
key = "$key_uri"
client-id = "$CLIENT_ID"
certificate-id = "$kid"
account = "$ACCOUNT"
alg = "$alg"
token-url = "$base/services/rest/auth/oauth2/v1/token"
TOML
  local times=() i start end
  for ((i = 0; i < RUNS; i++)); do
    start=$(date +%s%N)
    "$SUITEKEY" --config "$dir/config.toml" --profile "$label" -q rotate >/dev/null ||
      die "rotation $((i + 1)) of $label failed (its message is above)"
    end=$(date +%s%N)
    times+=($(((end - start) / 1000000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v alg="$alg" '
    { t[NR] = $1 }
    END { m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
          printf "%-6s %8.0f %8.0f %8.0f\n", alg, m, t[1], t[NR] }'
}

printf 'rotation wall time, %d rotations each (ms)\n' "$RUNS"
printf '%-6s %8s %8s %8s\n' alg median min max
bench es256 ES256
bench es384 ES384
bench ps256 PS256
