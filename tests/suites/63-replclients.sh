# Every key and certificate on every member, made by the clients people run (issue 10): on
# an HA pair through the fault shim with the default settings (and a replication key made by
# `p11proxy replication-key create`), pkcs11-tool makes an EC pair and an AES key and writes
# a certificate, p11tool makes a private key, OpenSSL with the libp11 engine signs the
# certificate with the HSM key; every object is on both members, the private keys locked
# (not extractable). Then the first member fails and every key and the certificate are found
# and used through the second. Flapping during creation leaves no orphan; what a member
# missed is copied by `p11proxy sync --repair` until `sync --check` agrees.
# Normal mode only: the clients are not ours (as 60-clients); the module's part of the same
# paths runs under ASan and valgrind in 66-replication (tests/progs/repltest.c).

if [ "$MODE" != normal ]; then
	skip "replclients" "real clients run in normal mode only (mode $MODE)"
	exit 0
fi
for tool in pkcs11-tool p11tool openssl softhsm2-util jq; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		skip "replclients" "$tool not installed (make deps)"
		exit 0
	fi
done
ENGINE=
for f in /usr/lib/*/engines-3/pkcs11.so /usr/lib/engines-3/pkcs11.so; do
	[ -f "$f" ] && ENGINE=$f && break
done

mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "replclients: softhsm setup"; exit 0; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: ha\n    ha: { replication_key: repl }\n    members:\n'
	printf '      - backend: shim\n        token_label: m1\n'
	printf '      - backend: shim\n        token_label: m2\n'
	# The default key policy: NSS names its new keys (CKA_ID) as their creator (issue 10).
	printf '  - label: nss\n    ha: { replication_key: repl }\n    members:\n'
	printf '      - backend: shim\n        token_label: m1\n'
	printf '      - backend: shim\n        token_label: m2\n'
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml
M=$PROXY_MODULE
PIN=$TEST_USER_PIN
LOG=$TMP/log
export P11P_SO_PIN=$TEST_SO_PIN

# p11 ARGS...: pkcs11-tool on the HA slot, logged in, output in $LOG.
p11() {
	pkcs11-tool --module "$M" --token-label ha --login --pin "$PIN" "$@" >"$LOG" 2>&1
}
# on TOKEN: pkcs11-tool -O of one member's token (SoftHSM2 directly) into $TMP/TOKEN.objs.
on() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$PIN" -O \
		>"$TMP/$1.objs" 2>&1
}
# count TOKEN KIND LABEL: objects of KIND ("Private Key", "Public Key", "Secret Key",
# "Certificate") labelled LABEL in $TMP/TOKEN.objs.
count() {
	awk -v kind="$2" -v label="$3" '
		/Object;/ { cur = index($0, kind " Object") == 1 }
		cur && $1 == "label:" { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l); if (l == label) n++ }
		END { print n + 0 }' "$TMP/$1.objs"
}
# access TOKEN KIND LABEL: the "Access:" line of that object.
access() {
	awk -v kind="$2" -v label="$3" '
		/Object;/ { cur = index($0, kind " Object") == 1; hit = 0 }
		cur && $1 == "label:" { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l); hit = l == label }
		hit && $1 == "Access:" { print; exit }' "$TMP/$1.objs"
}
# ok NAME COMMAND...: like check, but shows the client's output on failure.
ok() {
	local name=$1
	shift
	if "$@"; then
		pass "$name"
	else
		fail "$name" "exit $?"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
}
# sync_cli WANT_RC ARGS...: `p11proxy sync ARGS` with the PIN on stdin, output in $LOG.
sync_cli() {
	local want=$1 rc=0
	shift
	printf '%s\n' "$PIN" | "$CLI" sync "$@" >"$LOG" 2>&1 || rc=$?
	[ "$rc" -eq "$want" ] || { echo "    exit $rc, wanted $want"; return 1; }
}

printf 'p11proxy replication test data\n' >"$TMP/data"
openssl dgst -sha256 -binary "$TMP/data" >"$TMP/data.sha256"

if printf '%s\n' "$PIN" | "$CLI" replication-key create ha --so-pin-source env:P11P_SO_PIN \
	>"$LOG" 2>&1; then
	pass "replclients: replication-key create on both members"
else
	fail "replclients: replication-key create on both members"
	sed 's/^/    | /' "$LOG"
fi

# --- the clients make their objects through the slot -----------------------------------------

ok "replclients: pkcs11-tool --keypairgen EC (non-extractable by default)" \
	p11 --keypairgen --key-type EC:prime256v1 --id 01 --label ec1
ok "replclients: pkcs11-tool --keygen AES-256" p11 --keygen --key-type AES:32 --id 02 --label aes1
if GNUTLS_PIN=$PIN p11tool --provider "$M" --login --generate-privkey ECDSA --curve secp256r1 \
	--label p11t "pkcs11:token=ha" >"$LOG" 2>&1; then
	pass "replclients: p11tool --generate-privkey ECDSA"
else
	fail "replclients: p11tool --generate-privkey ECDSA"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
if [ -n "$ENGINE" ]; then
	cat >"$TMP/openssl.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $M
init = 0
EOF
	URI="pkcs11:token=ha;object=ec1;type=private;pin-value=$PIN"
	# libp11's engine cannot make keys: it uses one, to sign the certificate.
	if OPENSSL_CONF=$TMP/openssl.cnf openssl req -new -x509 -engine pkcs11 -keyform engine \
		-key "$URI" -subj /CN=ec1 -days 30 -out "$TMP/ec1.pem" >"$LOG" 2>&1; then
		pass "replclients: openssl req -engine pkcs11 signs a certificate with the HSM key"
	else
		fail "replclients: openssl req -engine pkcs11 signs a certificate"
		sed 's/^/    | /' "$LOG" | head -n 20
	fi
else
	skip "replclients: openssl engine" "libengine-pkcs11-openssl not installed"
fi
if [ ! -s "$TMP/ec1.pem" ]; then
	# No engine: a certificate for the public key, signed by a throwaway key.
	p11 --read-object --type pubkey --id 01 -o "$TMP/ec1.pub.der"
	openssl pkey -pubin -inform DER -in "$TMP/ec1.pub.der" -out "$TMP/ec1.pub.pem" 2>/dev/null
	openssl req -new -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$TMP/ca.key" -subj /CN=ec1 -days 30 -out "$TMP/ec1.pem" 2>/dev/null
fi
openssl x509 -in "$TMP/ec1.pem" -outform DER -out "$TMP/ec1.der"
openssl x509 -in "$TMP/ec1.pem" -pubkey -noout >"$TMP/ec1.pub.pem"
ok "replclients: pkcs11-tool --write-object a certificate" \
	p11 --write-object "$TMP/ec1.der" --type cert --id 01 --label ec1

# --- on both members, locked -----------------------------------------------------------------

on m1
on m2
for t in m1 m2; do
	got="$(count $t 'Private Key' ec1) $(count $t 'Public Key' ec1) $(count $t Certificate ec1)"
	got="$got $(count $t 'Secret Key' aes1) $(count $t 'Private Key' p11t)"
	if [ "$got" = "1 1 1 1 1" ]; then
		pass "replclients: member $t holds the EC pair, the certificate, the AES key, p11tool's key"
	else
		fail "replclients: member $t holds every object" "got $got, wanted 1 1 1 1 1"
		sed 's/^/    | /' "$TMP/$t.objs" | head -n 60
	fi
done
bad=
for t in m1 m2; do
	for o in 'Private Key:ec1' 'Secret Key:aes1' 'Private Key:p11t'; do
		a=$(access $t "${o%%:*}" "${o#*:}")
		# Locked: neither "extractable" (the flag) nor "never extractable" (it was once).
		case "$a" in
		*sensitive*extractable* | *extractable* | '') bad="$bad $t/${o#*:}:[$a]" ;;
		esac
	done
done
if [ -z "$bad" ]; then
	pass "replclients: private and secret keys locked on both members (not extractable)"
else
	fail "replclients: private and secret keys locked on both members" "$bad"
fi
ok "replclients: sync --check: both members agree" sync_cli 0 --check ha

# --- the first member fails: everything through the second -----------------------------------

printf 'm1 fail CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
if p11 --sign -m ECDSA --id 01 --signature-format openssl -i "$TMP/data.sha256" \
	-o "$TMP/sig.ec" && openssl pkeyutl -verify -pubin -inkey "$TMP/ec1.pub.pem" \
	-in "$TMP/data.sha256" -sigfile "$TMP/sig.ec" >>"$LOG" 2>&1; then
	pass "replclients: m1 failed: pkcs11-tool signs with the EC key on m2, openssl verifies"
else
	fail "replclients: m1 failed: pkcs11-tool signs with the EC key on m2"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
iv=000102030405060708090a0b0c0d0e0f
if p11 --encrypt -m AES-CBC-PAD --id 02 --iv "$iv" -i "$TMP/data" -o "$TMP/data.enc" &&
	p11 --decrypt -m AES-CBC-PAD --id 02 --iv "$iv" -i "$TMP/data.enc" -o "$TMP/data.dec" &&
	cmp -s "$TMP/data" "$TMP/data.dec"; then
	pass "replclients: m1 failed: the AES key encrypts and decrypts on m2"
else
	fail "replclients: m1 failed: the AES key encrypts and decrypts on m2"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
if p11 --read-object --type cert --id 01 -o "$TMP/cert.back" &&
	cmp -s "$TMP/cert.back" "$TMP/ec1.der"; then
	pass "replclients: m1 failed: the certificate is read back from m2"
else
	fail "replclients: m1 failed: the certificate is read back from m2"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
if GNUTLS_PIN=$PIN p11tool --provider "$M" --login --test-sign \
	"pkcs11:token=ha;object=p11t" >"$LOG" 2>&1; then
	pass "replclients: m1 failed: p11tool --test-sign with its key on m2"
else
	fail "replclients: m1 failed: p11tool --test-sign with its key on m2"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
if [ -n "$ENGINE" ]; then
	if OPENSSL_CONF=$TMP/openssl.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine \
		-sign "$URI" -out "$TMP/sig.eng" "$TMP/data" >"$LOG" 2>&1 &&
		openssl dgst -sha256 -verify "$TMP/ec1.pub.pem" -signature "$TMP/sig.eng" \
			"$TMP/data" >>"$LOG" 2>&1; then
		pass "replclients: m1 failed: openssl -engine pkcs11 signs on m2"
	else
		fail "replclients: m1 failed: openssl -engine pkcs11 signs on m2"
		sed 's/^/    | /' "$LOG" | head -n 20
	fi
fi
: >"$P11SHIM_CONTROL"

# --- flapping during creation: no orphan; what a member missed, sync --repair copies ----------

# m1 fails in the middle of the generation: nothing is left on either member.
printf 'm1 fail-fn C_GenerateKeyPair CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
p11 --keypairgen --key-type EC:prime256v1 --id 03 --label flap1
: >"$P11SHIM_CONTROL"
on m1
on m2
got="$(count m1 'Private Key' flap1)$(count m1 'Public Key' flap1)"
got="$got$(count m2 'Private Key' flap1)$(count m2 'Public Key' flap1)"
if [ "$got" = 0000 ]; then
	pass "replclients: m1 fails during a generation: no orphan on either member"
else
	fail "replclients: m1 fails during a generation: no orphan" "got $got"
fi
# m2 answers its probes but fails the copy: the new objects are refused and destroyed on m1
# too (no orphan), and the client is told.
printf 'm2 fail-fn C_UnwrapKey CKR_DEVICE_ERROR\nm2 fail-fn C_CreateObject CKR_DEVICE_ERROR\n' \
	>"$P11SHIM_CONTROL"
p11 --keypairgen --key-type EC:prime256v1 --id 05 --label flap3
rc1=$?
p11 --write-object "$TMP/ec1.der" --type cert --id 05 --label flap3
rc2=$?
: >"$P11SHIM_CONTROL"
on m1
on m2
got="$(count m1 'Private Key' flap3)$(count m1 'Public Key' flap3)$(count m1 Certificate flap3)"
got="$got$(count m2 'Private Key' flap3)$(count m2 'Public Key' flap3)$(count m2 Certificate flap3)"
if [ "$rc1" -ne 0 ] && [ "$rc2" -ne 0 ] && [ "$got" = 000000 ] &&
	grep -q "new certificate 'flap3' (id 05) refused and destroyed: member 'm2'" "$LOG"; then
	pass "replclients: m2 fails the copies: refused, no orphan on either member"
else
	fail "replclients: m2 fails the copies: refused, no orphan" "exit $rc1 $rc2, got $got"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
# m2 is down: the new objects are made on m1; m2 lacks them until the repair.
printf 'm2 fail CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
ok "replclients: m2 down: a new EC pair is made on m1" \
	p11 --keypairgen --key-type EC:prime256v1 --id 04 --label flap2
ok "replclients: m2 down: a certificate is written on m1" \
	p11 --write-object "$TMP/ec1.der" --type cert --id 04 --label flap2
: >"$P11SHIM_CONTROL"
if sync_cli 1 --check ha && grep -q 'missing: CKK_EC private key "flap2"\|missing: EC private key "flap2"' "$LOG" &&
	grep -q 'missing: certificate "flap2"' "$LOG" &&
	grep -q 'replication debts recorded by the module: 4 ' "$LOG"; then
	pass "replclients: sync --check reports what m2 missed"
else
	fail "replclients: sync --check reports what m2 missed"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
if sync_cli 0 --repair ha --json &&
	jq -e '.ok == true and .slots[0].members[1].copied == 3 and .slots[0].members[1].failed == 0
		and .slots[0].members[0].copied == 0 and .slots[0].debts_settled == 4 and
		.slots[0].debts_left == 0' "$LOG" >/dev/null; then
	pass "replclients: sync --repair --json: 3 objects copied to member 2, 4 debts settled"
else
	fail "replclients: sync --repair --json: 3 objects copied to member 2"
	sed 's/^/    | /' "$LOG" | head -n 30
fi
on m1
on m2
a1=$(access m1 'Private Key' flap2)
a2=$(access m2 'Private Key' flap2)
case "$a1$a2" in
*extractable* | '') fail "replclients: after the repair the key m2 missed is locked on both" \
	"m1 [$a1] m2 [$a2]" ;;
*) pass "replclients: after the repair the key m2 missed is locked on both (the owed lock)" ;;
esac
if sync_cli 0 --check ha && grep -q 'all 2 members hold the same' "$LOG"; then
	pass "replclients: sync --check after the repair: zero missing"
else
	fail "replclients: sync --check after the repair: zero missing"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
if sync_cli 0 --repair ha && grep -q 'member 2 m2: 0 copied, 0 failed' "$LOG"; then
	pass "replclients: sync --repair again: nothing to copy"
else
	fail "replclients: sync --repair again: nothing to copy"
	sed 's/^/    | /' "$LOG" | head -n 20
fi

# --- what one process recorded, another settles ----------------------------------------------

# m2 down while a certificate is written: recorded; the next process (m2 back) copies it
# when it makes a key, without a repair.
printf 'm2 fail CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
ok "replclients: m2 down: a certificate is written on m1" \
	p11 --write-object "$TMP/ec1.der" --type cert --id 06 --label late1
: >"$P11SHIM_CONTROL"
ok "replclients: m2 back: another process makes a key" \
	p11 --keygen --key-type AES:16 --id 07 --label late2
on m2
if [ "$(count m2 Certificate late1)" = 1 ] && [ "$(count m2 'Secret Key' late2)" = 1 ]; then
	pass "replclients: the next process settled the recorded debt: the certificate is on m2"
else
	fail "replclients: the next process settled the recorded debt" \
		"late1 on m2: $(count m2 Certificate late1)"
fi
# m2 down while the certificate is deleted: m2 keeps it, recorded; the repair removes it there
# rather than copy it back to m1.
printf 'm2 fail CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
ok "replclients: m2 down: the certificate is deleted through the slot" \
	p11 --delete-object --type cert --id 06 --label late1
: >"$P11SHIM_CONTROL"
if sync_cli 0 --repair ha --json &&
	jq -e '.ok == true and .slots[0].debts_settled == 1 and
		all(.slots[0].members[]; .copied == 0)' "$LOG" >/dev/null; then
	pass "replclients: sync --repair removes what was deleted while m2 was down (no copy back)"
else
	fail "replclients: sync --repair removes what was deleted while m2 was down"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
on m1
on m2
if [ "$(count m1 Certificate late1)$(count m2 Certificate late1)" = 00 ] &&
	sync_cli 0 --check ha; then
	pass "replclients: the deleted certificate is on neither member; sync --check agrees"
else
	fail "replclients: the deleted certificate is on neither member" \
		"$(count m1 Certificate late1)$(count m2 Certificate late1)"
fi

# --- changes and destroys follow on every member ---------------------------------------------

ok "replclients: pkcs11-tool --delete-object a certificate through the slot" \
	p11 --delete-object --type cert --id 04 --label flap2
on m1
on m2
if [ "$(count m1 Certificate flap2)$(count m2 Certificate flap2)" = 00 ]; then
	pass "replclients: the certificate is gone from both members"
else
	fail "replclients: the certificate is gone from both members"
fi

# --- NSS certutil: a key pair and its certificate on both members -----------------------------

if ! command -v certutil >/dev/null 2>&1 || ! command -v modutil >/dev/null 2>&1; then
	skip "replclients: NSS certutil" "libnss3-tools not installed (make deps)"
	exit 0
fi
mkdir -p "$TMP/nssdb"
head -c 64 /dev/urandom >"$TMP/noise"
printf '%s\n' "$PIN" >"$TMP/nss.pw"
if certutil -N -d "sql:$TMP/nssdb" --empty-password >"$LOG" 2>&1 &&
	echo | modutil -force -dbdir "sql:$TMP/nssdb" -add p11proxy -libfile "$M" >>"$LOG" 2>&1 &&
	certutil -S -d "sql:$TMP/nssdb" -h nss -f "$TMP/nss.pw" -n nss:c1 -s CN=c1 -x -t CT,, \
		-k ec -q nistp256 -z "$TMP/noise" >>"$LOG" 2>&1; then
	pass "replclients: certutil -S makes a key pair and a self-signed certificate"
else
	fail "replclients: certutil -S makes a key pair and a self-signed certificate"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
on m1
on m2
# The private key's CKA_ID is the certificate's (NSS sets it after the generation).
cid=$(awk '/^Certificate Object/ { c = 1 } c && $1 == "label:" { l = $2 }
	c && $1 == "ID:" { if (l == "nss:c1") { print $2; exit } c = 0 }' "$TMP/m1.objs")
# privkeys TOKEN ID: private keys with that CKA_ID in $TMP/TOKEN.objs.
privkeys() {
	awk -v id="$2" '/Object;/ { cur = index($0, "Private Key Object") == 1 }
		cur && $1 == "ID:" && $2 == id { n++ } END { print n + 0 }' "$TMP/$1.objs"
}
n1=$(privkeys m1 "$cid")
n2=$(privkeys m2 "$cid")
if [ -n "$cid" ] && [ "$(count m1 Certificate nss:c1)$(count m2 Certificate nss:c1)" = 11 ] &&
	[ "$n1$n2" = 11 ]; then
	pass "replclients: NSS's certificate and private key (its CKA_ID set later) on both members"
else
	fail "replclients: NSS's certificate and private key on both members" \
		"id ${cid:-none}, certs $(count m1 Certificate nss:c1)$(count m2 Certificate nss:c1), keys $n1$n2"
fi
printf 'm1 fail CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
if certutil -K -d "sql:$TMP/nssdb" -h nss -f "$TMP/nss.pw" >"$LOG" 2>&1 &&
	grep -q 'nss:c1' "$LOG"; then
	pass "replclients: m1 failed: certutil -K finds the key and its certificate on m2"
else
	fail "replclients: m1 failed: certutil -K finds the key and its certificate on m2"
	sed 's/^/    | /' "$LOG" | head -n 20
fi
: >"$P11SHIM_CONTROL"
