#!/usr/bin/env bash
# Soak test of the agent (not run in CI): a SoftHSM2 token in a temp dir, the emulator issuing
# 60-second access tokens, `suitekey agent`, and CLIENTS concurrent keep-alive clients asking it
# for a token for MINUTES (the load generator of benches/agent.rs in its soak mode). Every answer
# is checked: HTTP 200, JSON, `expires_at` after the moment it arrived, `expires_in` >= 1. The
# agent's RSS (VmRSS) is sampled after a 10 s warm-up, every minute and at the end.
#
# Usage: scripts/soak.sh [MINUTES] [CLIENTS]   (default 10 and 64)
# Exits non-zero on any failed request, any expired token served, or RSS growth of more than
# RSS_BOUND_KIB (default 4096 KiB = 4 MiB) from the post-warm-up sample to the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly MINUTES=${1:-10}
readonly CLIENTS=${2:-64}
readonly RSS_BOUND_KIB=${RSS_BOUND_KIB:-4096}
readonly TOKEN=soak
readonly KEY=ns-soak
readonly CLIENT_ID=161c761646ff925cafb93a8de1b5a06be9be365f994d446c62c02e53dae488cf
readonly ACCOUNT=1234567_SB1

die() {
  printf 'soak.sh: error: %s\n' "$*" >&2
  exit 1
}

[[ $MINUTES =~ ^[0-9]+$ ]] && ((MINUTES >= 1)) || die "MINUTES must be a whole number of at least 1, got '$MINUTES'"
[[ $CLIENTS =~ ^[0-9]+$ ]] && ((CLIENTS >= 1)) || die "CLIENTS must be a whole number of at least 1, got '$CLIENTS'"
[[ $RSS_BOUND_KIB =~ ^[0-9]+$ ]] || die "RSS_BOUND_KIB must be a number of KiB, got '$RSS_BOUND_KIB'"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

bash scripts/install-deps.sh
cargo build --release --quiet
cargo build --release --quiet --bench agent
readonly SUITEKEY=${CARGO_TARGET_DIR:-target}/release/suitekey
[[ -x $SUITEKEY ]] || die "cargo build did not produce $SUITEKEY"

work=$(mktemp -d /tmp/suitekey-soak.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf -- "$work"
}
trap cleanup EXIT

setup=$(bash softhsm/setup-token.sh "$work/token" "$TOKEN" --key "$KEY:p256")
eval "$setup"
key_uri="pkcs11:token=$TOKEN;object=$KEY;type=private?module-path=$(uri_encode "$SUITEKEY_MODULE")&pin-source=file:$(uri_encode "$work/token/user.pin")"

"$SUITEKEY" cert --key "$key_uri" --out "$work/soak.pem" >"$work/cert-id.txt" 2>"$work/cert.log" ||
  die "suitekey cert failed: $(cat -- "$work/cert.log")"
kid=$(<"$work/cert-id.txt")
serve_profile "$work" "$work" soak "$key_uri" "$work/soak.pem" "$kid" --token-lifetime 60

printf 'soak: %d clients for %d min against the agent (PID %d), 60-second tokens\n' "$CLIENTS" "$MINUTES" "$agent_pid"
results=$work/results.txt
SUITEKEY_BENCH_SOCK=$socket SUITEKEY_BENCH_PID=$agent_pid SUITEKEY_BENCH_PROFILE=soak \
  SUITEKEY_BENCH_SOAK_SECS=$((MINUTES * 60)) SUITEKEY_BENCH_CLIENTS=$CLIENTS \
  cargo bench --quiet --bench agent | tee "$results"

value() { sed -n "s/^$1=//p" "$results"; }
issued=$(curl -sf "$base/_emulator/stats" | jq -r .tokens_issued) || die "cannot read the emulator's stats"
exchanges=$(curl -sf --unix-socket "$socket" http://localhost/metrics |
  awk '/^suitekey_agent_upstream_exchanges_total[{ ]/ { n += $NF } END { print n + 0 }')
requests=$(value requests)
failures=$(value failures)
expired=$(value expired)
rss_start=$(value rss_start_kib)
rss_end=$(value rss_end_kib)
[[ -n $requests && -n $failures && -n $expired && -n $rss_start && -n $rss_end ]] ||
  die "the load generator printed no results (output above)"
growth=$((rss_end - rss_start))

printf '\nsoak summary: %d clients, %d min\n' "$CLIENTS" "$MINUTES"
printf '  requests served        %s (%s req/s)\n' "$requests" "$((requests / (MINUTES * 60)))"
printf '  failed requests        %s\n' "$failures"
printf '  expired tokens served  %s (lowest expires_in seen: %s s)\n' "$expired" "$(value min_expires_in)"
printf '  distinct tokens seen   %s\n' "$(value distinct_tokens)"
printf '  upstream exchanges     %s (emulator: %s tokens issued)\n' "$exchanges" "$issued"
printf '  agent RSS              start %s KiB, end %s KiB, max %s KiB, growth %s KiB (bound %s KiB)\n' \
  "$rss_start" "$rss_end" "$(value rss_max_kib)" "$growth" "$RSS_BOUND_KIB"

status=0
((failures == 0)) || { echo "soak: FAILED: $failures failed requests" >&2; status=1; }
((expired == 0)) || { echo "soak: FAILED: $expired expired tokens served" >&2; status=1; }
((growth <= RSS_BOUND_KIB)) || { echo "soak: FAILED: RSS grew by $growth KiB" >&2; status=1; }
((status == 0)) && echo "soak: passed"
exit "$status"
