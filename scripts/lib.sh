# shellcheck shell=bash
# Shell helpers shared by scripts/demo.sh and scripts/bench.sh (sourced, not run).
# Callers define TOKEN, SUITEKEY_MODULE and die().

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
