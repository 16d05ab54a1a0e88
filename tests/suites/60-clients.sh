# Real clients through libproxy.so: pkcs11-tool (OpenSC), p11tool (GnuTLS) and
# OpenSSL 3 with the libp11 engine, over a hermetic SoftHSM2.
# Sourced by tests/run.sh with tests/lib.sh loaded. Normal mode only: the
# clients are not ours, and instrumenting them tells us nothing about the proxy.

if [ "$MODE" != normal ]; then
	skip "clients" "real clients run in normal mode only (mode $MODE)"
	exit 0
fi
for tool in pkcs11-tool p11tool openssl softhsm2-util; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		skip "clients" "$tool not installed (make deps)"
		exit 0
	fi
done
ENGINE=
for f in /usr/lib/*/engines-3/pkcs11.so /usr/lib/engines-3/pkcs11.so; do
	[ -f "$f" ] && ENGINE=$f && break
done
if [ ! -f "$PROXY_MODULE" ]; then
	fail "clients: $PROXY_MODULE not built"
	exit 0
fi

mk_tmp
if ! softhsm_setup "$TMP" m1 m2; then
	fail "clients: softhsm setup"
	exit 0
fi
proxy_conf "$TMP/proxy.yaml" m1 m2
M=$PROXY_MODULE
PIN=$TEST_USER_PIN
LOG=$TMP/log

# p11 ARGS...: pkcs11-tool through the proxy, output in $LOG.
p11() {
	pkcs11-tool --module "$M" "$@" >"$LOG" 2>&1
}

# ssl ARGS...: openssl, output in $LOG.
ssl() {
	openssl "$@" >"$LOG" 2>&1
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

printf 'p11proxy client test data\n' >"$TMP/data"
openssl dgst -sha256 -binary "$TMP/data" >"$TMP/data.sha256"

# --- pkcs11-tool -----------------------------------------------------------------------------

p11 -L
if grep -q 'token label *: v-m1$' "$LOG" && grep -q 'token label *: v-m2$' "$LOG"; then
	pass "clients: pkcs11-tool -L shows the virtual slots"
else
	fail "clients: pkcs11-tool -L shows the virtual slots"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

ok "clients: pkcs11-tool --keypairgen EC P-256" \
	p11 --token-label v-m1 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 \
	--id 01 --label ec-key
ok "clients: pkcs11-tool --keypairgen RSA-2048" \
	p11 --token-label v-m1 --login --pin "$PIN" --keypairgen --key-type rsa:2048 \
	--id 02 --label rsa-key

p11 --token-label v-m1 --login --pin "$PIN" -O
if grep -q "label: *ec-key" "$LOG" && grep -q "label: *rsa-key" "$LOG" &&
	grep -q "Private Key Object; EC" "$LOG" && grep -q "Private Key Object; RSA" "$LOG"; then
	pass "clients: pkcs11-tool -O lists the new keys"
else
	fail "clients: pkcs11-tool -O lists the new keys"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

# Export the public keys (DER) and convert them for openssl.
for k in 01:ec 02:rsa; do
	id=${k%%:*}
	name=${k#*:}
	if p11 --token-label v-m1 --read-object --type pubkey --id "$id" -o "$TMP/$name.der" &&
		openssl pkey -pubin -inform DER -in "$TMP/$name.der" -out "$TMP/$name.pem" 2>>"$LOG"; then
		pass "clients: pkcs11-tool --read-object pubkey ($name) -> openssl"
	else
		fail "clients: pkcs11-tool --read-object pubkey ($name) -> openssl"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
done

# EC: SoftHSM2 2.6 signs CKM_ECDSA over a digest; the signature is converted to DER.
ok "clients: pkcs11-tool --sign ECDSA" \
	p11 --token-label v-m1 --login --pin "$PIN" --sign --id 01 -m ECDSA \
	--input-file "$TMP/data.sha256" --output-file "$TMP/sig.ec" --signature-format openssl
ok "clients: pkcs11-tool --verify ECDSA" \
	p11 --token-label v-m1 --login --pin "$PIN" --verify --id 01 -m ECDSA \
	--input-file "$TMP/data.sha256" --signature-file "$TMP/sig.ec" --signature-format openssl
ok "clients: openssl verifies the proxy's ECDSA signature" \
	ssl dgst -sha256 -verify "$TMP/ec.pem" -signature "$TMP/sig.ec" "$TMP/data"

ok "clients: pkcs11-tool --sign SHA256-RSA-PKCS" \
	p11 --token-label v-m1 --login --pin "$PIN" --sign --id 02 -m SHA256-RSA-PKCS \
	--input-file "$TMP/data" --output-file "$TMP/sig.rsa"
ok "clients: pkcs11-tool --verify SHA256-RSA-PKCS" \
	p11 --token-label v-m1 --login --pin "$PIN" --verify --id 02 -m SHA256-RSA-PKCS \
	--input-file "$TMP/data" --signature-file "$TMP/sig.rsa"
ok "clients: openssl verifies the proxy's RSA signature" \
	ssl dgst -sha256 -verify "$TMP/rsa.pem" -signature "$TMP/sig.rsa" "$TMP/data"

# A tampered file must not verify (the checks above are not vacuous).
printf 'tampered\n' >>"$TMP/data.bad"
cat "$TMP/data" >>"$TMP/data.bad"
if openssl dgst -sha256 -verify "$TMP/ec.pem" -signature "$TMP/sig.ec" "$TMP/data.bad" \
	>/dev/null 2>&1; then
	fail "clients: a tampered file does not verify"
else
	pass "clients: a tampered file does not verify"
fi

if ! p11 --token-label v-m1 --login --pin 0000 -O && grep -q CKR_PIN_INCORRECT "$LOG"; then
	pass "clients: pkcs11-tool wrong PIN -> CKR_PIN_INCORRECT"
else
	fail "clients: pkcs11-tool wrong PIN -> CKR_PIN_INCORRECT"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

# pkcs11-tool --test: on v-m2 with an EC key only. (Its RSA part asks for OAEP
# with a label, which SoftHSM2 itself refuses with CKR_ARGUMENTS_BAD.)
ok "clients: pkcs11-tool --keypairgen EC on v-m2" \
	p11 --token-label v-m2 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 \
	--id 03 --label test-key
ok "clients: pkcs11-tool --test --login" p11 --token-label v-m2 --test --login --pin "$PIN"

# --- p11tool (GnuTLS) ------------------------------------------------------------------------

if p11tool --provider "$M" --list-tokens >"$LOG" 2>&1 && grep -q 'Label: v-m1$' "$LOG" &&
	grep -q 'Label: v-m2$' "$LOG"; then
	pass "clients: p11tool --list-tokens"
else
	fail "clients: p11tool --list-tokens"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

if GNUTLS_PIN=$PIN p11tool --provider "$M" --login --list-all "pkcs11:token=v-m1" >"$LOG" 2>&1 &&
	grep -q 'Type: Private key (EC' "$LOG" && grep -q 'Type: Private key (RSA-2048)' "$LOG" &&
	grep -q 'Label: ec-key' "$LOG" && grep -q 'Label: rsa-key' "$LOG"; then
	pass "clients: p11tool --login --list-all"
else
	fail "clients: p11tool --login --list-all"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

if GNUTLS_PIN=$PIN p11tool --provider "$M" --login --test-sign \
	"pkcs11:token=v-m1;object=ec-key" >"$LOG" 2>&1; then
	pass "clients: p11tool --test-sign (EC)"
else
	fail "clients: p11tool --test-sign (EC)"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

# --- OpenSSL 3 + libp11 engine ---------------------------------------------------------------

if [ -z "$ENGINE" ]; then
	skip "clients: openssl engine" "libengine-pkcs11-openssl not installed"
	exit 0
fi
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
URI_EC="pkcs11:token=v-m1;object=ec-key;type=private;pin-value=$PIN"
URI_RSA="pkcs11:token=v-m1;object=rsa-key;type=private;pin-value=$PIN"

if OPENSSL_CONF=$TMP/openssl.cnf openssl dgst -sha256 -engine pkcs11 -keyform engine \
	-sign "$URI_EC" -out "$TMP/sig.eng.ec" "$TMP/data" >"$LOG" 2>&1 &&
	openssl dgst -sha256 -verify "$TMP/ec.pem" -signature "$TMP/sig.eng.ec" "$TMP/data" \
		>>"$LOG" 2>&1; then
	pass "clients: openssl dgst -engine pkcs11 signs (EC), openssl verifies"
else
	fail "clients: openssl dgst -engine pkcs11 signs (EC), openssl verifies"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

if OPENSSL_CONF=$TMP/openssl.cnf openssl pkeyutl -engine pkcs11 -keyform engine \
	-inkey "$URI_RSA" -sign -in "$TMP/data.sha256" -out "$TMP/sig.eng.rsa" \
	-pkeyopt digest:sha256 >"$LOG" 2>&1 &&
	openssl pkeyutl -verify -pubin -inkey "$TMP/rsa.pem" -in "$TMP/data.sha256" \
		-sigfile "$TMP/sig.eng.rsa" -pkeyopt digest:sha256 >>"$LOG" 2>&1; then
	pass "clients: openssl pkeyutl -engine pkcs11 signs (RSA), openssl verifies"
else
	fail "clients: openssl pkeyutl -engine pkcs11 signs (RSA), openssl verifies"
	sed 's/^/    | /' "$LOG" | head -n 30
fi

# The same through PKCS11_MODULE_PATH instead of the config's MODULE_PATH.
sed '/^MODULE_PATH/d' "$TMP/openssl.cnf" >"$TMP/openssl-env.cnf"
if PKCS11_MODULE_PATH=$M OPENSSL_CONF=$TMP/openssl-env.cnf openssl dgst -sha256 -engine pkcs11 \
	-keyform engine -sign "$URI_EC" -out "$TMP/sig.eng.ec2" "$TMP/data" >"$LOG" 2>&1 &&
	openssl dgst -sha256 -verify "$TMP/ec.pem" -signature "$TMP/sig.eng.ec2" "$TMP/data" \
		>>"$LOG" 2>&1; then
	pass "clients: openssl engine with PKCS11_MODULE_PATH"
else
	fail "clients: openssl engine with PKCS11_MODULE_PATH"
	sed 's/^/    | /' "$LOG" | head -n 30
fi
