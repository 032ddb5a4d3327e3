#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input with cargo-fuzz (libFuzzer), one target after
# the other, and prints per target the executions, the time and the crashes found:
#
#   pkcs11_uri          the RFC 7512 key URI parser (and its format/parse round trip)
#   config              the config file reader (size limit) and profile resolution
#   token_response      the token endpoint's success and error bodies
#   agent_http          raw bytes on one connection to the agent's axum/hyper service
#   emulator_assertion  the emulator's form and client-assertion verifier (one P-256 key)
#   emulator_upload     the body of a certificate upload to the emulator's certificate API
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60 s, every target)
# Not run by CI. Needs the nightly toolchain; installs cargo-fuzz when missing. Corpora grow
# in fuzz/corpus/TARGET/ (only the seed-* files are in git); crashes land in
# fuzz/artifacts/TARGET/ and libFuzzer's output in fuzz/logs/TARGET.log. Exits 1 if any
# target crashed. CARGO_TARGET_DIR, when set, is used for the fuzz build as well.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly ALL_TARGETS=(pkcs11_uri config token_response agent_http emulator_assertion emulator_upload)
readonly SECONDS_PER_TARGET=${1:-60}
shift || true
readonly RSS_LIMIT_MB=1024

die() {
  printf 'fuzz.sh: error: %s\n' "$*" >&2
  exit 1
}

# The longest input per target: past each parser's size limit, so the refusal is fuzzed too.
max_len() {
  case $1 in
    pkcs11_uri) echo 9000 ;;          # MAX_URI_LEN is 8 KiB
    config) echo 16384 ;;             # MAX_CONFIG_LEN (1 MiB) is checked by a property test
    token_response) echo 20000 ;;     # MAX_ACCESS_TOKEN_LEN is 16 KiB
    agent_http) echo 16384 ;;         # the agent refuses targets over 1 KiB, headers over 8 KiB
    emulator_assertion) echo 10000 ;; # MAX_ASSERTION_LEN is 8 KiB
    emulator_upload) echo 16384 ;;    # the emulator's MAX_BODY is 16 KiB
    *) die "unknown target '$1' (known: ${ALL_TARGETS[*]})" ;;
  esac
}

[[ $SECONDS_PER_TARGET =~ ^[0-9]+$ && $SECONDS_PER_TARGET -gt 0 ]] ||
  die "SECONDS_PER_TARGET must be a whole number of seconds, not '$SECONDS_PER_TARGET'"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
for target in "${targets[@]}"; do max_len "$target" >/dev/null; done

rustup toolchain list | grep -q '^nightly' ||
  die "cargo fuzz needs the nightly toolchain: rustup toolchain install nightly"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

echo "fuzz.sh: building the fuzz targets (nightly, AddressSanitizer)" >&2
(cd fuzz && cargo +nightly fuzz build)

mkdir -p fuzz/logs
status=0
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log=fuzz/logs/$target.log
  before=$(find "fuzz/artifacts/$target" -type f | wc -l)
  echo "fuzz.sh: $target for ${SECONDS_PER_TARGET}s (log: $log)" >&2
  start=$(date +%s)
  set +e
  (cd fuzz && cargo +nightly fuzz run "$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb="$RSS_LIMIT_MB" \
    -max_len="$(max_len "$target")" -timeout=10 -print_final_stats=1) >"$log" 2>&1
  code=$?
  set -e
  elapsed=$(($(date +%s) - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=$(($(find "fuzz/artifacts/$target" -type f | wc -l) - before))
  if [[ $code -ne 0 ]]; then
    status=1
    [[ $crashes -gt 0 ]] || crashes="? (exit $code, see $log)"
  fi
  summary+=("$(printf '%-20s %12s %8ss %s' "$target" "${runs:-?}" "$elapsed" "$crashes")")
done

printf '%-20s %12s %9s %s\n' target executions time crashes
printf '%s\n' "${summary[@]}"
exit "$status"
