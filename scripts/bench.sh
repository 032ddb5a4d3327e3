#!/usr/bin/env bash
# Wall time of one `suitekey assertion` (ES256: load the module, log in, sign, print the JWS)
# beside one `pkcs11-tool --sign -m ECDSA` (load, log in, sign a 32-byte digest), on the same
# SoftHSM2 token and P-256 key, measured with hyperfine. Prints the medians and their ratio.
#
# Then the agent: `suitekey agent` serving that key against the emulator; cached-token
# requests per second and p50/p99 latency over its socket with 1, 8 and 64 keep-alive clients,
# and with 8 while another process holds 2,000 idle connections (benches/agent.rs), its RSS,
# and as whole processes one `suitekey token --no-agent` exchange, one `suitekey token`
# answered by the agent, `suitekey --version` (process start-up alone) and `curl
# --unix-socket` on the same agent, with the ratios (target: token through the agent at most
# twice --version).
#
# Usage: scripts/bench.sh [--agent] [RUNS]   (runs per command, at least 15; default 50)
#   --agent   only the agent's load levels (no hyperfine comparisons)
# SUITEKEY_BASELINE=PATH adds that suitekey binary (another commit's release build) to the
# signing comparison, in the same hyperfine run, and prints this build's ratio to it: how a change
# shows it made nothing slower.
# Uses target/bench/ (token created once, then reused); hyperfine's JSON is kept in
# target/bench/hyperfine.json.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

AGENT_ONLY=0
if [[ ${1:-} == --agent ]]; then
  AGENT_ONLY=1
  shift
fi
readonly AGENT_ONLY
readonly BENCH_DIR=target/bench
readonly TOKEN=bench
readonly KEY=ns-bench
readonly RUNS=${1:-50}
# Idle connections another process holds during the last agent level.
readonly IDLE_CONNECTIONS=2000
readonly WARMUP=5
readonly CLIENT_ID=161c761646ff925cafb93a8de1b5a06be9be365f994d446c62c02e53dae488cf
readonly CERTIFICATE_ID=Uiv6n4otrKDNWldJXl4pbbevCza8NDeBTulujBq6vhI
readonly ACCOUNT=1234567_SB1
readonly SCOPE=restlets,rest_webservices

die() {
  printf 'bench.sh: error: %s\n' "$*" >&2
  exit 1
}

if [[ ! $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 15)); then
  die "RUNS must be a number of at least 15, got '$RUNS'"
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

bash scripts/install-deps.sh hyperfine
cargo build --release --quiet
readonly SUITEKEY=${CARGO_TARGET_DIR:-target}/release/suitekey
[[ -x $SUITEKEY ]] || die "cargo build did not produce $SUITEKEY"

setup=$(bash softhsm/setup-token.sh "$BENCH_DIR" "$TOKEN" --key "$KEY:p256")
eval "$setup"
key_id=$(pubkey_id "$KEY")
[[ -n $key_id ]] || die "no key labelled '$KEY' in token '$TOKEN'"
IFS= read -r pin <"$BENCH_DIR/user.pin" || [[ -n ${pin:-} ]] || die "cannot read $BENCH_DIR/user.pin"

# The same 32 bytes pkcs11-tool signs each time (a SHA-256 digest, as ES256 signs).
printf 'suitekey bench' | openssl dgst -sha256 -binary >"$BENCH_DIR/digest.bin"

key_uri="pkcs11:token=$TOKEN;object=$KEY;type=private?module-path=$(uri_encode "$SUITEKEY_MODULE")&pin-source=file:$(uri_encode "$PWD/$BENCH_DIR/user.pin")"
suitekey_argv=("$SUITEKEY" assertion --key "$key_uri" --client-id "$CLIENT_ID"
  --certificate-id "$CERTIFICATE_ID" --account "$ACCOUNT" --scope "$SCOPE")
# The PIN reaches pkcs11-tool through the environment (env:NAME), never through argv.
pkcs11_argv=(pkcs11-tool --module "$SUITEKEY_MODULE" --token-label "$TOKEN" --login
  --pin env:SUITEKEY_BENCH_PIN --sign -m ECDSA --id "$key_id" -i "$BENCH_DIR/digest.bin")

# One run of each first: a clear error now rather than hyperfine's "non-zero exit code".
jws=$("${suitekey_argv[@]}") || die "suitekey assertion failed (its message is above)"
[[ $jws =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || die "suitekey assertion did not print a compact JWS"
SUITEKEY_BENCH_PIN=$pin "${pkcs11_argv[@]}" -o "$BENCH_DIR/signature.bin" >"$BENCH_DIR/pkcs11-tool.log" 2>&1 || {
  cat -- "$BENCH_DIR/pkcs11-tool.log" >&2
  die "pkcs11-tool --sign failed (output above)"
}
[[ $(stat -c %s "$BENCH_DIR/signature.bin") == 64 ]] || die "pkcs11-tool did not produce a 64-byte ECDSA signature"

# suitekey assertion beside pkcs11-tool --sign, one process per signature (hyperfine).
bench_signing() {
  printf -v suitekey_cmd '%q ' "${suitekey_argv[@]}"
  printf -v pkcs11_cmd '%q ' "${pkcs11_argv[@]}"
  local baseline=()
  if [[ -n ${SUITEKEY_BASELINE:-} ]]; then
    [[ -x $SUITEKEY_BASELINE ]] || die "SUITEKEY_BASELINE names no executable: $SUITEKEY_BASELINE"
    printf -v baseline_cmd '%q ' "$SUITEKEY_BASELINE" "${suitekey_argv[@]:1}"
    baseline=(--command-name baseline "$baseline_cmd")
  fi
  json=$BENCH_DIR/hyperfine.json
  if ! SUITEKEY_BENCH_PIN=$pin hyperfine --shell=none --style none --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$json" --command-name suitekey "$suitekey_cmd" --command-name pkcs11-tool "$pkcs11_cmd" \
    "${baseline[@]}" >"$BENCH_DIR/hyperfine.log" 2>&1; then
    cat -- "$BENCH_DIR/hyperfine.log" >&2
    die "hyperfine failed (output above)"
  fi

  # name median min max runs (seconds) for each command, in order.
  stats=$(jq -r '.results[] | [.command, .median, .min, .max, (.times | length)] | @tsv' "$json") ||
    die "cannot read $json"
  awk -F'\t' -v runs="$RUNS" -v warmup="$WARMUP" '
    { name[NR] = $1; median[NR] = $2; min[NR] = $3; max[NR] = $4; n[NR] = $5 }
    END {
      if (NR < 2 || median[2] <= 0) { print "bench.sh: error: unexpected hyperfine results" > "/dev/stderr"; exit 1 }
      printf "ES256 on SoftHSM2, one process per signature (module load + login + sign); %d runs each after %d warmup runs\n\n", runs, warmup
      printf "%-40s %10s %10s %10s %6s\n", "command", "median", "min", "max", "runs"
      desc["suitekey"] = "suitekey assertion"
      desc["pkcs11-tool"] = "pkcs11-tool --sign -m ECDSA"
      desc["baseline"] = "baseline suitekey assertion"
      for (i = 1; i <= NR; i++)
        printf "%-40s %7.2f ms %7.2f ms %7.2f ms %6d\n", desc[name[i]], median[i] * 1000, min[i] * 1000, max[i] * 1000, n[i]
      printf "%-40s %10.2f\n", "ratio of medians suitekey / pkcs11-tool", median[1] / median[2]
      if (NR == 3) printf "%-40s %10.2f\n", "ratio of medians suitekey / baseline", median[1] / median[3]
    }' <<<"$stats"
}
((AGENT_ONLY)) || bench_signing
unset pin

# ---- the agent ----
work=$(mktemp -d /tmp/suitekey-bench.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf -- "$work"
}
trap cleanup EXIT

"$SUITEKEY" cert --replace --force --key "$key_uri" --out "$BENCH_DIR/bench.pem" >"$BENCH_DIR/cert-id.txt" 2>"$BENCH_DIR/cert.log" ||
  die "suitekey cert failed: $(cat -- "$BENCH_DIR/cert.log")"
kid=$(<"$BENCH_DIR/cert-id.txt")
serve_profile "$work" "$BENCH_DIR" bench "$key_uri" "$BENCH_DIR/bench.pem" "$kid"

printf '\nsuitekey agent: cached access tokens over the Unix socket (raw HTTP/1.1 keep-alive clients)\n\n'
SUITEKEY_BENCH_SOCK=$socket SUITEKEY_BENCH_PID=$agent_pid SUITEKEY_BENCH_PROFILE=bench \
  SUITEKEY_BENCH_IDLE=$IDLE_CONNECTIONS cargo bench --quiet --bench agent
((AGENT_ONLY)) && exit 0

printf -v direct_cmd '%q ' "$SUITEKEY" --config "$BENCH_DIR/config.toml" --profile bench token --no-agent
printf -v agent_cmd '%q ' "$SUITEKEY" --config "$BENCH_DIR/config.toml" --profile bench token
printf -v version_cmd '%q ' "$SUITEKEY" --version
printf -v curl_cmd '%q ' curl -sf --unix-socket "$socket" http://localhost/v1/profiles/bench/token
agent_json=$BENCH_DIR/hyperfine-agent.json
if ! SUITEKEY_AUTH_SOCK=$socket hyperfine --shell=none --style none --warmup 10 --runs "$((RUNS * 4))" \
  --export-json "$agent_json" --command-name direct "$direct_cmd" --command-name agent "$agent_cmd" \
  --command-name version "$version_cmd" --command-name curl "$curl_cmd" \
  >"$BENCH_DIR/hyperfine-agent.log" 2>&1; then
  cat -- "$BENCH_DIR/hyperfine-agent.log" >&2
  die "hyperfine failed (output above)"
fi
jq -r '.results[] | [.command, .median] | @tsv' "$agent_json" | awk -F'\t' -v runs="$((RUNS * 4))" '
  { median[$1] = $2 }
  END {
    printf "\nwhole processes, %d runs each (medians)\n", runs
    printf "%-58s %7.2f ms\n", "suitekey token --no-agent (load, login, sign, exchange)", median["direct"] * 1000
    printf "%-58s %7.2f ms\n", "suitekey token through the agent (cached)", median["agent"] * 1000
    printf "%-58s %7.2f ms\n", "suitekey --version (process start-up alone)", median["version"] * 1000
    printf "%-58s %7.2f ms\n", "curl --unix-socket on the same agent (cached)", median["curl"] * 1000
    printf "%-58s %10.2f\n", "ratio token through the agent / --version (target <= 2)", median["agent"] / median["version"]
    printf "%-58s %10.2f\n", "ratio token through the agent / curl --unix-socket", median["agent"] / median["curl"]
    printf "%-58s %10.1f\n", "ratio direct / through the agent", median["direct"] / median["agent"]
  }'
