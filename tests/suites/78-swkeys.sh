# Software keys (issue 12, tests/progs/swkeytest.c) over the fault-injecting shim: keys created
# and generated in software, their values stored only encrypted by the HSM (AES-GCM under the
# slot's wrapping key), checked against OpenSSL on the same key; opened again in a new process
# (HSM calls counted), evicted after cache_idle, the member doing the unwrap failing over; a
# missing wrapping key, a tampered or moved blob refused; `keys rewrap`; pkcs11-tool; the core
# dump of a process holding software and derived keys in use.
mk_tmp
softhsm_setup "$TMP" sw1 sw2 || { fail "swkeys: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
mkdir -m 700 "$TMP/state"
# conf WRAPPING_KEY: the configuration, with slot soft's wrapping key.
conf() {
	member() {
		printf '      - backend: shim\n        token_label: %s\n' "$1"
		[ -n "${2:-}" ] && printf '        pin: env:SWKEYS_PIN\n'
		return 0
	}
	{
		printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
		printf '  - label: soft\n    software_keys: { wrapping_key: %s }\n' "$1"
		printf '    members:\n'
		member sw1 pin
		member sw2 pin
		printf '  - label: soft-new\n'
		printf '    software_keys: { wrapping_key: wrap-a, new_keys: true }\n    members:\n'
		member sw1
		printf '  - label: soft-idle\n'
		printf '    software_keys: { wrapping_key: wrap-a, cache_idle: 300ms }\n    members:\n'
		member sw1
		printf '  - label: soft-nokey\n'
		printf '    software_keys: { wrapping_key: no-such-key }\n    members:\n'
		member sw1
		printf '  - label: plain\n    members:\n'
		member sw1
		printf '  - label: v-sw1\n    members:\n'
		member sw1
		printf '  - label: v-sw2\n    members:\n'
		member sw2
		printf 'state_dir: %s\n' "$TMP/state"
	} >"$TMP/proxy.yaml"
}
conf wrap-a
export P11PROXY_CONF=$TMP/proxy.yaml SWKEYS_PIN=$TEST_USER_PIN
DB=$TMP/state/keys.db

# st NAME CASE ARGS...: runs one case; its output in $TMP/NAME.out, messages in $TMP/NAME.err.
st() {
	local name=$1
	shift
	run_prog "$BUILD/tests/swkeytest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$P11SHIM_LOG" "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err"
	local rc=$?
	[ $rc -eq 0 ] || ! lsan_tracer_crash_only "$TMP/$name.out" "$TMP/$name.err" || rc=0
	[ $rc -eq 0 ] || sed 's/^/    /' "$TMP/$name.out" "$TMP/$name.err"
	return $rc
}

check "swkeys: HSM wrapping keys on both members (setup)" st setup setup
check "swkeys: created software keys: GCM and HMAC against OpenSSL, attributes, finds" \
	st create create soft
check "swkeys: a new process opens each stored key once through the HSM (calls counted)" \
	st use use soft 2
check "swkeys: every mechanism against OpenSSL (CBC, CBC-PAD, CTR, HMAC-SHA2, ECDSA, EdDSA, RSA)" \
	st mechs mechs soft
check "swkeys: C_UnwrapKey makes a software key (unwrapped by the HSM, kept by the proxy)" \
	st unwrap unwrap
check "swkeys: C_CreateObject of EC, Ed25519, RSA private and public keys from their parts (OpenSSL verifies); bad parts refused" \
	st parts parts soft
check "swkeys: the created keys, opened from the store in a new process, sign and verify" \
	st partsuse partsuse soft
check "swkeys: C_UnwrapKey of software EC and RSA private keys (PKCS#8 under the HSM's kek)" \
	st unwrappriv unwrappriv
check "swkeys: generated (new_keys), session software keys; none without software_keys" \
	st generate generate
check "swkeys: evicted after cache_idle, opened again by the HSM" st idle idle
idlebg() {
	P11PROXY_DEBUG=object P11PROXY_DEBUG_FILE=$TMP/idlebg.debug st idlebg idlebg
}
check "swkeys: evicted past cache_idle with no call at all (the probe thread), reopened by the HSM" \
	idlebg
nokey() {
	st nokey nokey && grep -q "no secret key labelled 'no-such-key' (software_keys: wrapping_key) on member 'sw1'" "$TMP/nokey.err"
}
check "swkeys: a missing wrapping key is named, with its slot and member" nokey
check "swkeys: the member doing the unwrap fails: the session moves, sw2 unwraps" \
	st failover failover

# Virtual-key state and permissions, from the CLI, rule software keys as HSM keys.
cli_keys() { run_prog "$CLI" keys "$@" --slot soft >>"$TMP/cli.out" 2>&1; }
perms() {
	cli_keys deny sk-hmac sign && st deny op soft sk-hmac hmac CKR_KEY_FUNCTION_NOT_PERMITTED &&
		cli_keys allow sk-hmac sign && st allow op soft sk-hmac hmac CKR_OK &&
		cli_keys deactivate sk-aes &&
		st deact op soft sk-aes gcm CKR_0xd0310001 &&
		cli_keys activate sk-aes && st act op soft sk-aes gcm CKR_OK ||
		{ cat "$TMP/cli.out"; return 1; }
}
check "swkeys: keys deny/allow and deactivate/activate apply to software keys" perms
# The same, on a process using the key all along: its next *Init after the
# change follows the store (the record cached on the object is re-read once
# the index's generation moves on).
opagain() {
	local fifo=$TMP/opagain.in pid i rc=0
	rm -f "$fifo"
	mkfifo "$fifo"
	"$BUILD/tests/swkeytest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$P11SHIM_LOG" opagain soft \
		"$1" "$2" "$3" "$4" <"$fifo" >"$TMP/opagain.out" 2>"$TMP/opagain.err" &
	pid=$!
	exec 7>"$fifo"
	for i in $(seq 100); do grep -q '^ready' "$TMP/opagain.out" && break; sleep 0.1; done
	grep -q '^ready' "$TMP/opagain.out" || rc=1
	shift 4
	[ $rc -ne 0 ] || cli_keys "$@" || rc=1
	exec 7>&-
	wait "$pid" || rc=1
	[ $rc -eq 0 ] || sed 's/^/    /' "$TMP/opagain.out" "$TMP/opagain.err" "$TMP/cli.out"
	return $rc
}
opagain_all() {
	opagain sk-hmac hmac CKR_OK CKR_KEY_FUNCTION_NOT_PERMITTED deny sk-hmac sign &&
		opagain sk-hmac hmac CKR_KEY_FUNCTION_NOT_PERMITTED CKR_OK allow sk-hmac sign &&
		opagain sk-aes gcm CKR_OK CKR_0xd0310001 deactivate sk-aes &&
		opagain sk-aes gcm CKR_0xd0310001 CKR_OK activate sk-aes
}
check "swkeys: a process using a software key sees keys deny/allow, deactivate/activate at its next operation" \
	opagain_all

# The store holds ciphertext only: the key's bytes are nowhere in it.
value_hex() { printf '%s' "$1" | openssl dgst -sha256 -binary | od -An -tx1 | tr -d ' \n'; }
plain_db() {
	local v
	v=$(value_hex "software aes")
	[ -s "$DB" ] && ! od -An -tx1 -v "$DB" | tr -d ' \n' | grep -q "$v"
}
check "swkeys: the store holds no key value in the clear" plain_db

# Tampering, with the sqlite3 CLI: one byte of a blob changed, then a blob moved to another key.
# flip_byte FILE OFFSET: the byte inverted (writing a set value left it as it was when it
# already had that value: one run in 256).
flip_byte() {
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ') && [ -n "$b" ] &&
		printf '%b' "\\0$(printf %o $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
vid_of() { sqlite3 "$DB" "SELECT vid FROM vkeys WHERE CAST(label AS TEXT) = '$1';" | head -1; }
tamper() {
	local vid rc
	cp "$DB" "$TMP/db.orig" && vid=$(vid_of sk-aes) && [ -n "$vid" ] &&
		sqlite3 "$DB" "SELECT writefile('$TMP/blob', data) FROM blobs WHERE vid = $vid;" >/dev/null &&
		flip_byte "$TMP/blob" 30 &&
		sqlite3 "$DB" "UPDATE blobs SET data = readfile('$TMP/blob') WHERE vid = $vid;" &&
		st tamper use soft refused &&
		grep -q "software key [0-9a-f]*: its stored value fails authentication" "$TMP/tamper.err"
	rc=$?
	cp "$TMP/db.orig" "$DB"
	return $rc
}
check "swkeys: a tampered blob is refused, naming the key" tamper
moved() {
	local a b rc
	cp "$DB" "$TMP/db.orig" && a=$(vid_of sk-aes) && b=$(vid_of sk-aes2) &&
		[ -n "$a" ] && [ -n "$b" ] &&
		sqlite3 "$DB" "UPDATE blobs SET data = (SELECT data FROM blobs WHERE vid = $b) WHERE vid = $a;" &&
		st moved use soft refused && grep -q "fails authentication" "$TMP/moved.err"
	rc=$?
	cp "$TMP/db.orig" "$DB"
	return $rc
}
check "swkeys: a blob moved onto another key's record is refused" moved
check "swkeys: the untouched store works again" st use2 use soft 2

# keys rewrap: every blob of the slot under wrap-b, in one transaction; then the config changes.
rewrap() {
	run_prog "$CLI" keys rewrap soft --to wrap-b >"$TMP/rewrap.out" 2>"$TMP/rewrap.err" || {
		cat "$TMP/rewrap.err"
		return 1
	}
	n=$(sqlite3 "$DB" "SELECT count(*) FROM blobs b JOIN vkeys k ON k.vid = b.vid WHERE k.slot = 'soft';") &&
		[ "$n" -gt 3 ] && grep -q "^slot soft: $n software keys re-encrypted under 'wrap-b'" "$TMP/rewrap.out" &&
		grep -q "now set software_keys: wrapping_key: wrap-b" "$TMP/rewrap.out" &&
		st stale use soft refused && grep -q "fails authentication" "$TMP/stale.err" &&
		conf wrap-b && st rewrapped use soft 2
}
check "swkeys: keys rewrap SLOT --to LABEL (old key refused, new one works)" rewrap
rewrap_bad() {
	! run_prog "$CLI" keys rewrap soft --to no-such-key >"$TMP/rw2.out" 2>"$TMP/rw2.err" &&
		grep -q "no secret key labelled 'no-such-key'" "$TMP/rw2.err" && st rw2 use soft 2
}
check "swkeys: rewrap to a missing key changes nothing" rewrap_bad

# sync lists the members: software keys are held by none of them, yet they are never missing.
sync_sw() {
	local n
	n=$(sqlite3 "$DB" "SELECT count(*) FROM blobs b JOIN vkeys k ON k.vid = b.vid WHERE k.slot = 'soft';") &&
		[ "$n" -gt 3 ] || { echo "no software keys to sync ($n)"; return 1; }
	# keys activate (the perms case) left sk-aes active, though no member holds it.
	run_prog "$CLI" keys list --slot soft --json >"$TMP/list0.json" 2>&1 &&
		[ "$(jq -r '.keys[] | select(.label == "sk-aes") | .state' "$TMP/list0.json")" = active ] ||
		{ echo "activated software key not active"; cat "$TMP/list0.json"; return 1; }
	# A record an older sync marked missing (state 2) is found again.
	sqlite3 "$DB" "UPDATE vkeys SET state = 2 WHERE slot = 'soft' AND CAST(label AS TEXT) = 'sk-hmac';" &&
		run_prog "$CLI" sync soft >"$TMP/sync.out" 2>&1 || { cat "$TMP/sync.out"; return 1; }
	grep -q "^slot soft: .*missing 0," "$TMP/sync.out" || { cat "$TMP/sync.out"; return 1; }
	run_prog "$CLI" sync soft >"$TMP/sync2.out" 2>&1 &&
		grep -q "^slot soft: added 0, updated 0, missing 0," "$TMP/sync2.out" || { cat "$TMP/sync2.out"; return 1; }
	run_prog "$CLI" keys list --slot soft --json >"$TMP/list.json" 2>&1 &&
		[ "$(jq '[.keys[] | select(.origin == "created" and .state == "active")] | length' "$TMP/list.json")" = "$n" ] &&
		[ "$(jq '[.keys[] | select(.state == "missing")] | length' "$TMP/list.json")" = 0 ] &&
		run_prog "$CLI" keys list --slot soft >"$TMP/list.txt" 2>&1 &&
		! grep -q " missing " "$TMP/list.txt" && st synced use soft 2 ||
		{ cat "$TMP/sync.out" "$TMP/list.txt" "$TMP/list.json"; return 1; }
}
check "swkeys: sync leaves software keys active (no member holds them); keys list shows them" sync_sw

# keys rotate of a software key: a new software key (made by the CLI, sealed by the HSM under the
# slot's wrapping key, stored as a blob), linked to the old one, which keeps verify/decrypt only.
blobs() { sqlite3 "$DB" "SELECT count(*) FROM blobs;"; }
rotate_sw() {
	local label=$1 id=$2 kind=$3 before old new key=$1
	before=$(blobs)
	if [ "$kind" = ec ] || [ "$kind" = ed ] || [ "$kind" = rsa ]; then # a pair: its private key, by virtual id
		run_prog "$CLI" keys list --slot soft --json >"$TMP/rot-list.json" 2>&1 &&
			key=$(jq -r --arg l "$label" '.keys[] | select(.label == $l and .class == "private") | .vid' "$TMP/rot-list.json") &&
			[ -n "$key" ] || { cat "$TMP/rot-list.json"; return 1; }
	fi
	run_prog "$CLI" keys rotate "$key" --slot soft --id "$id" --json >"$TMP/rot-$label.json" 2>"$TMP/rot-$label.err" ||
		{ cat "$TMP/rot-$label.err"; return 1; }
	old=$(jq -r '.old.vid' "$TMP/rot-$label.json") && new=$(jq -r '.new.vid' "$TMP/rot-$label.json") &&
		[ "$(jq -r '.old.next' "$TMP/rot-$label.json")" = "$new" ] &&
		[ "$(jq -r '.new.prev' "$TMP/rot-$label.json")" = "$old" ] &&
		[ "$(jq -r '.new.state' "$TMP/rot-$label.json")" = active ] &&
		[ "$(jq -r '.new.id' "$TMP/rot-$label.json")" = "$id" ] ||
		{ echo "records not linked"; cat "$TMP/rot-$label.json"; return 1; }
	# One new blob per new key; none of its bytes on a member's token (only the index has it).
	local want=1
	[ "$key" != "$label" ] && want=2
	[ "$(blobs)" = $((before + want)) ] || { echo "blobs: $before -> $(blobs)"; return 1; }
	# The audit trail: the new key created, the old one rotated.
	run_prog "$CLI" audit --json >"$TMP/audit.json" 2>&1 &&
		jq -e --arg v "$old" '[.. | objects | select(.what? == "rotate" and .vid? == $v)] | length > 0' \
			"$TMP/audit.json" >/dev/null || { echo "no rotate row in the audit trail"; return 1; }
	# The module: the successor works, the old key is left as rotate leaves HSM keys.
	st "rotated-$label" rotated soft "$label" "$id" "$kind"
}
# keys rotate of a software key is one store transaction: a store write failing in its middle
# (a trigger refusing the old record's link to the new one, and the removal of a new record that
# a rotation in several writes would try next) leaves no record, blob or audit row behind.
rotate_failed() {
	local vid q before after rc=0
	vid=$(vid_of sk-aes) && [ -n "$vid" ] || return 1
	q="SELECT (SELECT count(*) FROM vkeys) || ' ' || (SELECT count(*) FROM vkeys WHERE live = 1) || ' ' ||
		(SELECT count(*) FROM blobs) || ' ' || (SELECT count(*) FROM audit) || ' ' ||
		(SELECT rev || '/' || perms || '/' || next || '/' || state FROM vkeys WHERE vid = $vid);"
	before=$(sqlite3 "$DB" "$q") &&
		sqlite3 "$DB" "CREATE TRIGGER inject BEFORE UPDATE ON vkeys WHEN NEW.next != 0 OR NEW.live = 0
			BEGIN SELECT RAISE(ABORT, 'injected store failure'); END;" || return 1
	run_prog "$CLI" keys rotate sk-aes --slot soft >"$TMP/rotfail.out" 2>&1 && rc=1
	grep -q "recording the new software key failed.*nothing changed" "$TMP/rotfail.out" || rc=1
	sqlite3 "$DB" "DROP TRIGGER inject;" || rc=1
	after=$(sqlite3 "$DB" "$q")
	[ "$before" = "$after" ] || { echo "store changed: $before -> $after"; rc=1; }
	[ $rc = 0 ] && st rotfail op soft sk-aes gcm CKR_OK || { cat "$TMP/rotfail.out"; rc=1; }
	return $rc
}
check "swkeys: keys rotate of a software key failing in the store changes nothing (one transaction)" \
	rotate_failed
check "swkeys: keys rotate of a software HMAC key: a new software key, the old one verify-only" \
	rotate_sw sk-hmac 5a01 hmac
check "swkeys: keys rotate of a software AES key: the successor encrypts, the old one decrypts only" \
	rotate_sw sk-aes2 5a02 gcm
check "swkeys: keys rotate of a software EC key pair: a new pair, the old private key no longer signs" \
	rotate_sw sk-p256 5a03 ec
check "swkeys: keys rotate of a software Ed25519 key pair: a new Ed25519 pair" \
	rotate_sw sk-ed25519 5a04 ed
check "swkeys: keys rotate of a software RSA key pair: a new pair of the same size" \
	rotate_sw sk-rsa 5a05 rsa
rotate_tampered() {
	local vid before after rc
	cp "$DB" "$TMP/db.orig" && vid=$(vid_of sk-aes) && [ -n "$vid" ] &&
		sqlite3 "$DB" "SELECT writefile('$TMP/blob', data) FROM blobs WHERE vid = $vid;" >/dev/null &&
		flip_byte "$TMP/blob" 30 &&
		sqlite3 "$DB" "UPDATE blobs SET data = readfile('$TMP/blob') WHERE vid = $vid;" &&
		before=$(sqlite3 "$DB" "SELECT count(*) FROM vkeys;") &&
		! run_prog "$CLI" keys rotate sk-aes --slot soft >"$TMP/rotbad.out" 2>&1 &&
		grep -q "does not decrypt under the current wrapping key.*nothing changed" "$TMP/rotbad.out" &&
		after=$(sqlite3 "$DB" "SELECT count(*) FROM vkeys;") && [ "$before" = "$after" ] ||
		{ cat "$TMP/rotbad.out"; rc=1; }
	cp "$TMP/db.orig" "$DB"
	return ${rc:-0}
}
check "swkeys: keys rotate of a software key whose stored value fails authentication changes nothing" \
	rotate_tampered

# pkcs11-tool: a token key generated on a new_keys slot is a software key; HMAC with it.
p11tool() {
	command -v pkcs11-tool >/dev/null || return 0
	printf 'data' >"$TMP/data"
	pkcs11-tool --module "$PROXY_MODULE" --token-label soft-new --login --pin "$TEST_USER_PIN" \
		--keygen --key-type GENERIC:32 --label p11t --id 77 >"$TMP/p11t.out" 2>&1 &&
		pkcs11-tool --module "$PROXY_MODULE" --token-label soft-new --login \
			--pin "$TEST_USER_PIN" --sign --mechanism SHA256-HMAC --label p11t \
			--input-file "$TMP/data" --output-file "$TMP/mac" >>"$TMP/p11t.out" 2>&1 &&
		[ "$(stat -c %s "$TMP/mac")" = 32 ] &&
		n=$(sqlite3 "$DB" "SELECT count(*) FROM blobs b JOIN vkeys k ON k.vid = b.vid WHERE k.label = CAST('p11t' AS BLOB) OR k.label = 'p11t';") &&
		[ "$n" = 1 ] || { cat "$TMP/p11t.out"; return 1; }
}
if [ "$MODE" = normal ]; then
	check "swkeys: pkcs11-tool generates a software key (new_keys) and signs with it" p11tool
else
	skip "swkeys: pkcs11-tool" "real clients run in normal mode only (mode $MODE)"
fi

# OpenSSL with the libp11 engine signs with a software key pair (made by the mechs case).
ENGINE=
for f in /usr/lib/*/engines-3/pkcs11.so /usr/lib/engines-3/pkcs11.so; do
	[ -f "$f" ] && ENGINE=$f && break
done
engine_sign() {
	cat >"$TMP/openssl.cnf" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $PROXY_MODULE
init = 0
CNF
	printf 'signed by a software key' >"$TMP/edata"
	# (On slot soft-new: libp11 0.4 stops enumerating at an Ed25519 key, which slot soft has.)
	pkcs11-tool --module "$PROXY_MODULE" --token-label soft-new --login --pin "$TEST_USER_PIN" \
		--keypairgen --key-type EC:prime256v1 --label eng-ec --id 51 >"$TMP/eng.log" 2>&1 &&
		pkcs11-tool --module "$PROXY_MODULE" --token-label soft-new --login \
			--pin "$TEST_USER_PIN" --read-object --type pubkey --label eng-ec \
			-o "$TMP/p256.der" >>"$TMP/eng.log" 2>&1 &&
		n=$(sqlite3 "$DB" "SELECT count(*) FROM blobs b JOIN vkeys k ON k.vid = b.vid WHERE CAST(k.label AS TEXT) = 'eng-ec';") &&
		[ "$n" = 2 ] &&
		OPENSSL_CONF=$TMP/openssl.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine \
			-sign "pkcs11:token=soft-new;object=eng-ec;type=private;pin-value=$TEST_USER_PIN" \
			-out "$TMP/esig" "$TMP/edata" >>"$TMP/eng.log" 2>&1 &&
		openssl dgst -sha256 -verify "$TMP/p256.der" -keyform DER -signature "$TMP/esig" \
			"$TMP/edata" >>"$TMP/eng.log" 2>&1 || { cat "$TMP/eng.log"; return 1; }
}
if [ "$MODE" != normal ]; then
	skip "swkeys: openssl engine" "real clients run in normal mode only (mode $MODE)"
elif [ -n "$ENGINE" ]; then
	check "swkeys: pkcs11-tool generates a software EC pair (new_keys); the libp11 engine signs, openssl verifies" \
		engine_sign
else
	skip "swkeys: openssl engine" "libengine-pkcs11-openssl not installed"
fi

# The core dump of a process holding the software key and a derived key in use.
gcore_check() {
	command -v gcore >/dev/null || { echo "gdb's gcore is not installed"; return 1; }
	local fifo=$TMP/hold.in pid i core=$TMP/core hex dv
	mkfifo "$fifo"
	"$BUILD/tests/swkeytest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$P11SHIM_LOG" hold \
		<"$fifo" >"$TMP/hold.out" 2>"$TMP/hold.err" &
	pid=$!
	exec 7>"$fifo"
	for i in $(seq 100); do grep -q '^ready' "$TMP/hold.out" && break; sleep 0.1; done
	gcore -o "$core" "$pid" >/dev/null 2>&1
	exec 7>&-
	wait "$pid" || { cat "$TMP/hold.out"; return 1; }
	[ -s "$core.$pid" ] || { echo "no core written"; return 1; }
	od -An -tx1 -v "$core.$pid" | tr -d ' \n' >"$TMP/core.hex"
	rm -f "$core.$pid"
	# The derived key: HKDF-SHA256(salt = the HSM key's value, IKM "fragment", info "ctx").
	dv=$(openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt "hexkey:$(printf fragment | od -An -tx1 | tr -d ' \n')" \
		-kdfopt "hexsalt:$(value_hex "fragment base key")" -kdfopt "hexinfo:$(printf ctx | od -An -tx1 | tr -d ' \n')" HKDF | tr -d ':\n' | tr 'A-F' 'a-f')
	# The check can see: the test program's own buffer (its IV, in ordinary memory) is found.
	grep -q "$(printf hold-iv-1234 | od -An -tx1 | tr -d ' \n')" "$TMP/core.hex" ||
		{ echo "the positive control is not in the core"; return 1; }
	for hex in "$(value_hex "software aes")" "$(value_hex "software hmac")" "$dv"; do
		[ ${#hex} = 64 ] || { echo "no reference value"; return 1; }
		# The key, and its first 16 bytes with each 32-bit word byte-swapped (a key schedule).
		swapped=$(echo "${hex:0:32}" | sed -E 's/(..)(..)(..)(..)/\4\3\2\1/g')
		if grep -q "$hex\|${hex:0:32}\|$swapped" "$TMP/core.hex"; then
			echo "key bytes ${hex:0:8}... found in the core dump"
			return 1
		fi
	done
	# The HMAC keyed states the engine keeps for the old sk-hmac (as good as its key): SHA-256
	# and SHA-512, inner and outer, as the words lie in memory and in big-endian order.
	"$BUILD/tests/swkeytest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$P11SHIM_LOG" hmacstates \
		"software hmac" >"$TMP/states.out" 2>&1 &&
		grep -E '^([0-9a-f]{64}|[0-9a-f]{128})$' "$TMP/states.out" >"$TMP/states.hex" &&
		[ "$(wc -l <"$TMP/states.hex")" = 4 ] ||
		{ echo "no reference states"; cat "$TMP/states.out"; return 1; }
	local n=0
	while read -r hex; do
		n=$((n + 1))
		# (SHA-256 words are 32 bits, SHA-512's 64.)
		if [ ${#hex} = 64 ]; then
			swapped=$(echo "${hex:0:32}" | sed -E 's/(..)(..)(..)(..)/\4\3\2\1/g')
		elif [ ${#hex} = 128 ]; then
			swapped=$(echo "${hex:0:32}" |
				sed -E 's/(..)(..)(..)(..)(..)(..)(..)(..)/\8\7\6\5\4\3\2\1/g')
		else
			echo "bad reference state"
			return 1
		fi
		if grep -q "${hex:0:32}\|$swapped" "$TMP/core.hex"; then
			echo "HMAC keyed state $n found in the core dump"
			return 1
		fi
	done <"$TMP/states.hex"
	rm -f "$TMP/states.hex" "$TMP/states.out"
}
if [ "$MODE" = normal ]; then
	check "swkeys: a core dump holds no byte of the software or derived keys in use, nor the HMAC keyed states (gcore)" \
		gcore_check
else
	skip "swkeys: core dump check" "normal mode only (asan/valgrind change the memory layout)"
fi
