#!/usr/bin/env bash
# Creates (or reuses) a SoftHSM2 token in its own directory, with random PINs kept in files.
#
# Usage: softhsm/setup-token.sh DIR [LABEL] [--key KEYLABEL:KIND]...
#   LABEL  token label, 1-32 characters (default: suitekey)
#   KIND   p256 | p384 | p521 | rsa3072 | rsa4096
#
# Creates DIR/softhsm2.conf (from softhsm/softhsm2.conf.in), DIR/tokens/, and DIR/user.pin and
# DIR/so.pin (mode 0600, 16 random hex characters; kept when present). Initializes a token named
# LABEL unless one exists, and generates each --key pair whose label is not there yet (private key
# sensitive, never extractable, with the sign usage). Safe to re-run.
#
# On success prints only these lines, for `eval "$(softhsm/setup-token.sh DIR)"`:
#   export SOFTHSM2_CONF=DIR/softhsm2.conf
#   export SUITEKEY_MODULE=/usr/lib/softhsm/libsofthsm2.so
#
# PINs reach pkcs11-tool through its environment (`--pin env:VAR`), never through argv.
# SUITEKEY_MODULE overrides the PKCS#11 module path.
set -euo pipefail

readonly PROG=setup-token.sh
readonly MODULE=${SUITEKEY_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
TEMPLATE="$(dirname "${BASH_SOURCE[0]}")/softhsm2.conf.in"
readonly TEMPLATE

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() {
  printf 'usage: %s DIR [LABEL] [--key KEYLABEL:KIND]...   (KIND: p256 p384 p521 rsa3072 rsa4096)\n' "$PROG"
}

# --- arguments ---------------------------------------------------------------------------------

positional=()
key_specs=()
while (($# > 0)); do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --key)
      (($# >= 2)) || die "--key needs a value KEYLABEL:KIND"
      key_specs+=("$2")
      shift 2
      ;;
    --key=*)
      key_specs+=("${1#--key=}")
      shift
      ;;
    --)
      shift
      positional+=("$@")
      break
      ;;
    -*)
      usage >&2
      die "unknown option $1"
      ;;
    *)
      positional+=("$1")
      shift
      ;;
  esac
done
((${#positional[@]} >= 1 && ${#positional[@]} <= 2)) || {
  usage >&2
  exit 2
}
label=${positional[1]:-suitekey}
((${#label} >= 1 && ${#label} <= 32)) || die "token label must be 1 to 32 characters: '$label'"

# Maps a KIND to pkcs11-tool's --key-type.
key_type() {
  case $1 in
    p256) echo EC:prime256v1 ;;
    p384) echo EC:secp384r1 ;;
    p521) echo EC:secp521r1 ;;
    rsa3072) echo rsa:3072 ;;
    rsa4096) echo rsa:4096 ;;
    *) return 1 ;;
  esac
}

for spec in "${key_specs[@]}"; do
  [[ $spec == *:* && -n ${spec%:*} ]] || die "--key wants KEYLABEL:KIND, got '$spec'"
  key_type "${spec##*:}" >/dev/null || die "unknown key kind '${spec##*:}' in '$spec' (use p256, p384, p521, rsa3072 or rsa4096)"
done

command -v pkcs11-tool >/dev/null 2>&1 || die "pkcs11-tool not found: run scripts/install-deps.sh (Debian package opensc)"
[[ -r $MODULE ]] || die "PKCS#11 module $MODULE not found: run scripts/install-deps.sh (Debian package softhsm2) or set SUITEKEY_MODULE"
[[ -r $TEMPLATE ]] || die "config template $TEMPLATE not found"

# --- directory, configuration, lock ------------------------------------------------------------

[[ ${positional[0]} != *$'\n'* ]] || die "DIR must not contain a newline"
mkdir -p -- "${positional[0]}/tokens" || die "cannot create ${positional[0]}/tokens"
dir=$(cd -- "${positional[0]}" && pwd -P)
readonly conf="$dir/softhsm2.conf" user_pin_file="$dir/user.pin" so_pin_file="$dir/so.pin"

# One setup at a time per directory (parallel tests may share one).
exec 9>"$dir/.setup-token.lock"
flock 9

template=$(<"$TEMPLATE")
config=${template//@TOKENDIR@/"$dir/tokens"}
if [[ ! -f $conf || "$(<"$conf")" != "$config" ]]; then
  printf '%s\n' "$config" >"$conf.tmp"
  mv -f -- "$conf.tmp" "$conf"
fi
export SOFTHSM2_CONF=$conf

# --- helpers around pkcs11-tool ----------------------------------------------------------------

log=$(mktemp)
trap 'rm -f -- "$log"' EXIT

# Runs pkcs11-tool with its output kept aside; on failure shows it and stops.
#   p11 WHAT ARGS...   (stdout of pkcs11-tool goes to our stdout only through p11_out)
p11() {
  local what=$1
  shift
  if ! pkcs11-tool --module "$MODULE" "$@" >"$log" 2>&1; then
    cat -- "$log" >&2
    die "pkcs11-tool failed to $what (output above)"
  fi
}

# Like p11, but prints pkcs11-tool's stdout.
p11_out() {
  local what=$1
  shift
  if ! pkcs11-tool --module "$MODULE" "$@" 2>"$log"; then
    cat -- "$log" >&2
    die "pkcs11-tool failed to $what (output above)"
  fi
}

# Prints the labels of the initialized tokens, one per line.
token_labels() {
  p11_out "list token slots" --list-token-slots |
    awk '/^  token label *: / { sub(/^  token label *: /, ""); print }'
}

# Prints the slot id (0x…) of the first slot without an initialized token.
free_slot() {
  p11_out "list token slots" --list-token-slots | awk '
    /^Slot [0-9]+ \(/ { id = $3; gsub(/[():]/, "", id); next }
    /^  token state: *uninitialized/ && id != "" && free == "" { free = id }
    END { if (free != "") print free }'
}

# Prints one line per object of the token: TYPE<TAB>LABEL<TAB>ID<TAB>ACCESS (logs in).
objects() {
  SUITEKEY_SETUP_USER_PIN=$user_pin p11_out "list the objects of token '$label'" \
    --token-label "$label" --login --pin env:SUITEKEY_SETUP_USER_PIN --list-objects |
    awk '
      function flush() { if (type != "") print type "\t" lbl "\t" id "\t" access; type = lbl = id = access = "" }
      /^[^ ]/ { flush(); type = $0; sub(/ Object.*/, "", type); next }
      /^  label: / { lbl = $0; sub(/^  label: +/, "", lbl); next }
      /^  ID: / { id = $0; sub(/^  ID: +/, "", id); next }
      /^  Access: / { access = $0; sub(/^  Access: +/, "", access); next }
      END { flush() }'
}

random_hex() { # random_hex BYTES
  od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# Creates a PIN file unless it exists; checks an existing one.
ensure_pin_file() {
  local file=$1 tmp mode
  if [[ -e $file ]]; then
    [[ -f $file && -r $file ]] || die "$file is not a readable file"
    mode=$(stat -c %a -- "$file")
    [[ $mode == 600 || $mode == 400 ]] || die "$file has mode $mode: only its owner may read it (chmod 600 '$file')"
    return 0
  fi
  tmp=$(mktemp "$dir/.pin.XXXXXX") # mktemp creates the file with mode 0600
  printf '%s\n' "$(random_hex 8)" >"$tmp"
  chmod 600 -- "$tmp"
  mv -f -- "$tmp" "$file"
}

read_pin() { # read_pin FILE -> the PIN on stdout (command substitution only)
  local pin=
  IFS= read -r pin <"$1" || true
  [[ ${#pin} -ge 4 ]] || die "$1 does not hold a PIN (at least 4 characters on its first line)"
  printf '%s' "$pin"
}

# --- the token ---------------------------------------------------------------------------------

# (Listings are captured first: with pipefail, `grep -q` ending a pipeline early can fail it.)
labels=$(token_labels)
if grep -qxF -- "$label" <<<"$labels"; then
  [[ -e $user_pin_file && -e $so_pin_file ]] ||
    die "token '$label' exists in $dir/tokens but $user_pin_file or $so_pin_file is missing: remove $dir to start over"
  ensure_pin_file "$user_pin_file"
  ensure_pin_file "$so_pin_file"
  user_pin=$(read_pin "$user_pin_file")
else
  ensure_pin_file "$user_pin_file"
  ensure_pin_file "$so_pin_file"
  user_pin=$(read_pin "$user_pin_file")
  so_pin=$(read_pin "$so_pin_file")
  slot=$(free_slot)
  [[ -n $slot ]] || die "SoftHSM2 offers no free slot in $dir/tokens"
  SUITEKEY_SETUP_SO_PIN=$so_pin SUITEKEY_SETUP_USER_PIN=$user_pin p11 "initialize token '$label'" \
    --slot "$slot" --init-token --label "$label" --so-pin env:SUITEKEY_SETUP_SO_PIN \
    --init-pin --pin env:SUITEKEY_SETUP_USER_PIN
  unset so_pin
  labels=$(token_labels)
  grep -qxF -- "$label" <<<"$labels" || die "token '$label' was initialized but is not listed"
fi

# --- key pairs ---------------------------------------------------------------------------------

if ((${#key_specs[@]} > 0)); then
  listing=$(objects)
  for spec in "${key_specs[@]}"; do
    key_label=${spec%:*}
    if awk -F'\t' -v l="$key_label" '$1 == "Private Key" && $2 == l { found = 1 } END { exit !found }' <<<"$listing"; then
      continue
    fi
    # A fresh CKA_ID, unused by any object of the token.
    while :; do
      id=$(random_hex 8)
      awk -F'\t' -v id="$id" '$3 == id { found = 1 } END { exit !found }' <<<"$listing" || break
    done
    SUITEKEY_SETUP_USER_PIN=$user_pin p11 "generate key pair '$key_label'" \
      --token-label "$label" --login --pin env:SUITEKEY_SETUP_USER_PIN \
      --keypairgen --key-type "$(key_type "${spec##*:}")" --label "$key_label" --id "$id" \
      --usage-sign --sensitive
    listing=$(objects)
    access=$(awk -F'\t' -v id="$id" '$1 == "Private Key" && $3 == id { print $4 }' <<<"$listing")
    # pkcs11-tool prints e.g. "sensitive, always sensitive, never extractable, local".
    if [[ ", $access," != *", sensitive,"* || ", $access," == *", extractable,"* ]]; then
      die "private key '$key_label' (id $id) is not sensitive and non-extractable (Access: ${access:-?}); delete it"
    fi
  done
fi

printf 'export SOFTHSM2_CONF=%q\n' "$conf"
printf 'export SUITEKEY_MODULE=%q\n' "$MODULE"
