# shellcheck shell=bash
# Shell helpers shared by scripts/demo.sh, scripts/bench.sh and scripts/bench-rotate.sh (sourced,
# not run).
# Callers define TOKEN, SUITEKEY_MODULE and die() (serve_profile also SUITEKEY, CLIENT_ID,
# ACCOUNT and a pids array).

# Percent-encodes a PKCS#11 URI query value (RFC 7512), keeping path characters readable.
uri_encode() {
  local LC_ALL=C # byte by byte, so UTF-8 is encoded per byte
  local s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~/:-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

# Prints the CKA_ID (hex) of the public key labelled $1 in the token (no login needed).
pubkey_id() {
  local listing
  listing=$(pkcs11-tool --module "$SUITEKEY_MODULE" --token-label "$TOKEN" --list-objects --type pubkey 2>/dev/null) ||
    die "cannot list the public keys of token '$TOKEN'"
  awk -v want="$1" '
    /^[^ ]/ { lbl = "" }
    /^  label: / { lbl = $0; sub(/^  label: +/, "", lbl) }
    /^  ID: / && lbl == want && found == "" { found = $0; sub(/^  ID: +/, "", found) }
    END { if (found != "") print found }' <<<"$listing"
}

# Starts the emulator with the --register SPEC (extra emulator flags in "$@"), its URL file in
# WORK and its log in LOGS; sets $base (its URL) and appends its PID to the caller's pids array.
# Usage: start_emulator WORK LOGS SPEC [EMULATOR_FLAG...]
start_emulator() {
  local work=$1 logs=$2 spec=$3
  shift 3
  "$SUITEKEY" emulate "$@" --register "$spec" >"$work/emulator.url" 2>"$logs/emulator.log" &
  pids+=($!)
  for _ in $(seq 100); do [[ -s $work/emulator.url ]] && break; sleep 0.05; done
  base=$(head -n1 "$work/emulator.url")
  [[ $base == http://127.0.0.1:* ]] || die "the emulator did not start: $(cat -- "$logs/emulator.log")"
}

# Starts the emulator (extra emulator flags in "$@") with the certificate PEM registered for
# CLIENT_ID/ACCOUNT, writes a config with one profile PROFILE for KEY_URI and KID, starts the agent
# on a socket in WORK and checks it serves a token. Logs and the config go to LOGS. Sets $base
# (the emulator's URL), $socket and $agent_pid, and appends both PIDs to the caller's pids array (the caller's trap stops them).
# Usage: serve_profile WORK LOGS PROFILE KEY_URI PEM KID [EMULATOR_FLAG...]
serve_profile() {
  local work=$1 logs=$2 profile=$3 key_uri=$4 pem=$5 kid=$6
  shift 6
  start_emulator "$work" "$logs" "client-id=$CLIENT_ID,cert=$pem,account=$ACCOUNT" "$@"
  cat >"$logs/config.toml" <<TOML
[profiles.$profile]
key = "$key_uri"
client-id = "$CLIENT_ID"
certificate-id = "$kid"
account = "$ACCOUNT"
token-url = "$base/services/rest/auth/oauth2/v1/token"
TOML
  socket=$work/agent.sock
  "$SUITEKEY" --config "$logs/config.toml" agent --socket "$socket" >"$work/agent.path" 2>"$logs/agent.log" &
  agent_pid=$!
  pids+=("$agent_pid")
  for _ in $(seq 100); do [[ -s $work/agent.path ]] && break; sleep 0.05; done
  [[ -S $socket ]] || die "the agent did not start: $(cat -- "$logs/agent.log")"
  curl -sf --unix-socket "$socket" "http://localhost/v1/profiles/$profile/token" >/dev/null ||
    die "the agent gave no token: $(cat -- "$logs/agent.log")"
}
