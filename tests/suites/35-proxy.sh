# Proxy-specific behaviour: handle spaces, login with member PINs, slot events,
# quick start from the environment, config errors at C_Initialize, allocation failures.
mk_tmp
softhsm_setup "$TMP" m1 m2 || { fail "proxy: softhsm setup"; return; }
proxy_conf "$TMP/proxy.yaml" m1 m2
PT=$BUILD/tests/proxytest

check "proxy: handle spaces and lifetimes" run_prog "$PT" handles "$PROXY_MODULE" v-m1 "$TEST_USER_PIN"
check "proxy: slot events and C_GetInfo" run_prog "$PT" events "$PROXY_MODULE"
check "proxy: slot ids are config positions" run_prog "$PT" slots "$PROXY_MODULE" v-m1 v-m2
if [ "$MODE" = normal ]; then
	# In-process with the static library: every allocation made to fail in turn.
	# (each refused config load prints "out of memory": expected, so kept out of the log)
	check "proxy: allocation failures give CKR_HOST_MEMORY" \
		sh -c '"$1" alloc v-m1 "$2" 2>/dev/null' - "$PT" "$TEST_USER_PIN"
fi

# A member PIN from a file: the application logs in with the same PIN (no hash).
printf '%s\n' "$TEST_USER_PIN" >"$TMP/m1.pin"
chmod 600 "$TMP/m1.pin"
cat >"$TMP/pin.yaml" <<YAML
backends:
  - name: softhsm
    module: $SOFTHSM_MODULE
slots:
  - label: pinned
    members:
      - backend: softhsm
        token_label: m1
        pin: file:$TMP/m1.pin
YAML
P11PROXY_CONF=$TMP/pin.yaml check "proxy: member PIN, virtual PIN equal to it" \
	run_prog "$PT" login "$PROXY_MODULE" pinned "$TEST_USER_PIN" 0000

# With user_pin_hash the application's PIN is the virtual one, not the member's.
hash=$(printf 'virtual-secret\n' | "$CLI" hash-pin 2>/dev/null)
if [ -n "$hash" ]; then
	sed "s|    members:|    user_pin_hash: \"$hash\"\n    members:|" "$TMP/pin.yaml" >"$TMP/hash.yaml"
	P11PROXY_CONF=$TMP/hash.yaml check "proxy: member PIN behind user_pin_hash" \
		run_prog "$PT" login "$PROXY_MODULE" pinned virtual-secret "$TEST_USER_PIN"
else
	fail "proxy: member PIN behind user_pin_hash" "p11proxy hash-pin gave nothing"
fi

# Quick start: no file, the Akeyless-style environment variables.
(
	unset P11PROXY_CONF
	export PKCS11_LIB_PATH=$SOFTHSM_MODULE HSM_TOKEN_LABEL=m2 HSM_PIN=$TEST_USER_PIN
	check "proxy: quick start by token label" run_prog "$PT" slots "$PROXY_MODULE" m2
)
serial=$(softhsm2-util --show-slots | awk '/Serial number:/ {s = $3} /Label:/ && $2 == "m1" {print s; exit}')
(
	unset P11PROXY_CONF
	export PKCS11_LIB_PATH=$SOFTHSM_MODULE HSM_TOKEN_SERIAL=$serial
	if [ -z "$serial" ]; then
		fail "proxy: quick start by serial" "no serial from softhsm2-util"
	else
		check "proxy: quick start by serial takes the token's label" \
			run_prog "$PT" slots "$PROXY_MODULE" m1
	fi
)

# A bad config fails C_Initialize with file:line:column on stderr.
sed 's/^    module:/    modul:/' "$TMP/proxy.yaml" >"$TMP/bad.yaml"
if P11PROXY_CONF=$TMP/bad.yaml "$PT" events "$PROXY_MODULE" >/dev/null 2>"$TMP/err"; then
	fail "proxy: bad config fails C_Initialize" "it initialized"
elif grep -q "bad.yaml:3:5: " "$TMP/err"; then
	pass "proxy: bad config fails C_Initialize with file:line:column"
else
	fail "proxy: bad config fails C_Initialize with file:line:column" "$(cat "$TMP/err")"
fi
