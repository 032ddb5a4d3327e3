#!/usr/bin/env bash
# The suitekey demo: a key pair made inside a SoftHSM2 token (it never leaves it), the
# certificate an administrator would upload to NetSuite, and a client assertion signed by the
# token, checked independently with OpenSSL against that certificate.
#
# Usage: scripts/demo.sh   (from anywhere; safe to re-run, reuses target/demo/)
#
# Steps: install missing dependencies; cargo build --release; create or reuse the token 'demo'
# under target/demo/; `suitekey keygen` the ES256 key 'ns-demo' and its certificate (once);
# `suitekey check` the certificate; sign a client assertion with `suitekey assertion`; print
# its header and claims; verify its signature with OpenSSL against the certificate; start the
# NetSuite emulator (`suitekey emulate`) with the certificate registered; get an access token
# with `suitekey token`; call the emulator's protected resource with it through `suitekey exec`
# and curl (the token piped to curl's stdin, never in its argv); stop the emulator by PID.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly DEMO_DIR=target/demo
readonly TOKEN=demo
readonly KEY=ns-demo
readonly CERT=$DEMO_DIR/$KEY.pem
# A client id in NetSuite's format (64 hex characters), as the integration record shows it.
readonly CLIENT_ID=161c761646ff925cafb93a8de1b5a06be9be365f994d446c62c02e53dae488cf
readonly ACCOUNT=1234567_SB1
readonly SCOPE=restlets,rest_webservices

step() { printf '\n==> %s\n' "$*"; }

die() {
  printf 'demo.sh: error: %s\n' "$*" >&2
  exit 1
}

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Decodes the base64url (unpadded) text $1 to stdout.
b64url_decode() {
  local s=${1//-/+}
  s=${s//_//}
  case $((${#s} % 4)) in
    2) s+="==" ;;
    3) s+="=" ;;
    1) return 1 ;;
  esac
  printf '%s' "$s" | base64 -d
}

step "Installing what is missing (scripts/install-deps.sh)"
bash scripts/install-deps.sh

step "Building suitekey (cargo build --release)"
cargo build --release --quiet
[[ -x target/release/suitekey ]] || die "cargo build did not produce target/release/suitekey"

# A token without the certificate file is from an interrupted run: start it over.
[[ -f $CERT ]] || rm -rf -- "$DEMO_DIR"

step "SoftHSM2 token '$TOKEN' ($DEMO_DIR/, created once, then reused)"
setup=$(bash softhsm/setup-token.sh "$DEMO_DIR" "$TOKEN")
eval "$setup"
printf '%s\n' "$setup"

key_uri="pkcs11:token=$TOKEN;object=$KEY?module-path=$(uri_encode "$SUITEKEY_MODULE")&pin-source=file:$(uri_encode "$PWD/$DEMO_DIR/user.pin")"

if [[ -f $CERT ]]; then
  step "Key '$KEY' and its certificate $CERT are already there (made by an earlier run)"
else
  step "Making the key pair inside the token and its certificate (suitekey keygen)"
  printf 'target/release/suitekey keygen --key %s \\\n    --alg ES256 --subject %s --out %s\n\n' \
    "'$key_uri'" "'CN=suitekey demo,O=Acme'" "$CERT"
  target/release/suitekey keygen --key "$key_uri" --alg ES256 \
    --subject 'CN=suitekey demo,O=Acme' --out "$CERT" >/dev/null ||
    die "suitekey keygen failed (its message is above)"
fi

step "Checking the certificate against NetSuite's rules (suitekey check)"
CERTIFICATE_ID=$(target/release/suitekey check --cert "$CERT" --key "$key_uri") ||
  die "suitekey check refused the certificate (its reasons are above)"
printf 'certificate id NetSuite will show: %s\n' "$CERTIFICATE_ID"

step "Signing the client assertion inside the token (suitekey assertion)"
printf 'target/release/suitekey assertion --key %s \\\n    --client-id %s --certificate-id %s \\\n    --account %s --scope %s\n\n' \
  "'$key_uri'" "$CLIENT_ID" "$CERTIFICATE_ID" "$ACCOUNT" "$SCOPE"

jws=$(target/release/suitekey assertion --key "$key_uri" --client-id "$CLIENT_ID" \
  --certificate-id "$CERTIFICATE_ID" --account "$ACCOUNT" --scope "$SCOPE") ||
  die "suitekey assertion failed (its message is above)"
[[ $jws =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] ||
  die "suitekey assertion did not print one compact JWS (header.payload.signature): '$jws'"
printf '%s\n' "$jws"

IFS=. read -r header_b64 claims_b64 signature_b64 <<<"$jws"
header=$(b64url_decode "$header_b64") || die "the JWS header is not base64url"
claims=$(b64url_decode "$claims_b64") || die "the JWS payload is not base64url"

step "Header"
jq . <<<"$header" || die "the JWS header is not JSON"
step "Claims"
jq . <<<"$claims" || die "the JWS claims are not JSON"

alg=$(jq -r .alg <<<"$header")
[[ $alg == ES256 ]] || die "expected alg ES256 for a P-256 key, the header says '$alg'"

step "Verifying the ES256 signature with OpenSSL against the certificate"
verify_dir=$DEMO_DIR/verify
rm -rf -- "$verify_dir"
mkdir -p -- "$verify_dir"
openssl x509 -in "$CERT" -noout -pubkey >"$verify_dir/pub.pem" ||
  die "openssl cannot read the certificate $CERT"
cat -- "$verify_dir/pub.pem"

# JWS carries ECDSA signatures as raw r||s (32 + 32 bytes for ES256); OpenSSL wants DER.
b64url_decode "$signature_b64" >"$verify_dir/sig.raw" || die "the JWS signature is not base64url"
sig_hex=$(od -An -v -tx1 "$verify_dir/sig.raw" | tr -d ' \n')
((${#sig_hex} == 128)) || die "an ES256 signature is 64 bytes, this one is $((${#sig_hex} / 2))"
printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "${sig_hex:0:64}" "${sig_hex:64}" >"$verify_dir/sig.asn1"
openssl asn1parse -genconf "$verify_dir/sig.asn1" -out "$verify_dir/sig.der" -noout ||
  die "openssl could not encode the signature as DER"
printf '%s' "$header_b64.$claims_b64" >"$verify_dir/signing-input"
if openssl dgst -sha256 -verify "$verify_dir/pub.pem" -signature "$verify_dir/sig.der" \
  "$verify_dir/signing-input" >"$verify_dir/openssl.out" 2>&1; then
  echo "signature verified by OpenSSL against the certificate"
else
  cat -- "$verify_dir/openssl.out" >&2
  die "OpenSSL rejects the signature"
fi

step "Starting the NetSuite emulator on loopback with the certificate registered (suitekey emulate)"
emulator_out=$DEMO_DIR/emulator.out
emulator_log=$DEMO_DIR/emulator.log
target/release/suitekey emulate --listen 127.0.0.1:0 \
  --register "client-id=$CLIENT_ID,cert=$CERT,account=$ACCOUNT" >"$emulator_out" 2>"$emulator_log" &
emulator_pid=$!
trap 'kill "$emulator_pid" 2>/dev/null || true; wait "$emulator_pid" 2>/dev/null || true' EXIT
base_url=
for _ in $(seq 100); do
  base_url=$(head -n1 "$emulator_out" 2>/dev/null || true)
  [[ -n $base_url ]] && break
  kill -0 "$emulator_pid" 2>/dev/null || break
  sleep 0.1
done
[[ $base_url == http://127.0.0.1:* ]] || die "the emulator did not start: $(cat "$emulator_log")"
token_url=$base_url/services/rest/auth/oauth2/v1/token
printf 'emulator (pid %s) at %s\n' "$emulator_pid" "$base_url"

profile=(--key "$key_uri" --client-id "$CLIENT_ID" --certificate-id "$CERTIFICATE_ID"
  --account "$ACCOUNT" --scope "$SCOPE" --token-url "$token_url")

step "Getting an access token: assertion signed in the token, exchanged at the emulator (suitekey token)"
printf 'target/release/suitekey token --key … --client-id … --certificate-id %s --account %s \\\n    --token-url %s --format json\n\n' \
  "$CERTIFICATE_ID" "$ACCOUNT" "$token_url"
token_json=$(target/release/suitekey token "${profile[@]}" --format json) ||
  die "suitekey token failed (its message is above)"
# The token itself is a secret: show its shape, not its value.
jq '.access_token |= (.[0:6] + "…(" + (length | tostring) + " characters)")' <<<"$token_json"

step "Calling NetSuite's REST API with it (suitekey exec, the token piped to curl)"
# The token must not be in curl's argv, which every local user can read in /proc/PID/cmdline:
# the inner shell's printf (a builtin, so no new process) pipes the header to curl's stdin.
# shellcheck disable=SC2016 # the command as a user types it, $NETSUITE_ACCESS_TOKEN unexpanded
printf 'target/release/suitekey exec … -- sh -c '\''printf "Authorization: Bearer %%s\\n" "$NETSUITE_ACCESS_TOKEN" | curl -H @- %s'\''\n\n' \
  "$base_url/services/rest/record/v1/metadata-catalog"
# shellcheck disable=SC2016 # expanded by the inner shell, where suitekey exec put the token
target/release/suitekey exec "${profile[@]}" -- sh -c \
  'printf "Authorization: Bearer %s\n" "$NETSUITE_ACCESS_TOKEN" | curl -sS --fail-with-body -H @- "$1"' sh \
  "$base_url/services/rest/record/v1/metadata-catalog" | jq . ||
  die "the API call with the access token failed"

step "Stopping the emulator (pid $emulator_pid)"
kill "$emulator_pid"
wait "$emulator_pid" || die "the emulator did not stop cleanly"
trap - EXIT
echo "done: a key that never left the token got an access token and called the API"
