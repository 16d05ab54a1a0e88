# p11proxy replication-key create: the replication key on every member of an HA slot, one
# value, made by the security officer where SoftHSM2 wants it; then replication through the
# module works with it (tests/progs/repltest.c). Refused when the key exists, all or nothing
# when a member fails (the fault shim), --json, the value never in the output.
mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "replkey: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: ha\n    ha: { replication_key: repl, probe_interval: 100ms }\n'
	printf '    policy: { write_back: true }\n    members:\n'
	printf '      - backend: shim\n        token_label: m1\n'
	printf '      - backend: shim\n        token_label: m2\n'
	printf '  - label: nolabel\n    members:\n'
	printf '      - backend: shim\n        token_label: m1\n'
	printf '  - label: v-m1\n    members:\n      - backend: shim\n        token_label: m1\n'
	printf '  - label: v-m2\n    members:\n      - backend: shim\n        token_label: m2\n'
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml
export P11P_SO_PIN=$TEST_SO_PIN

# rk WANT_RC ARGS...: replication-key with the user PIN on stdin, output in $TMP/rk.out/.err.
rk() {
	local want=$1 rc=0
	shift
	printf '%s\n' "$TEST_USER_PIN" | run_prog "$CLI" replication-key "$@" >"$TMP/rk.out" \
		2>"$TMP/rk.err" || rc=$?
	cat "$TMP/rk.out" "$TMP/rk.err" >>"$TMP/all.out"
	if [ "$rc" -ne "$want" ]; then
		echo "    exit $rc, wanted $want"
		sed 's/^/    /' "$TMP/rk.out" "$TMP/rk.err"
		return 1
	fi
}
# count TOKEN LABEL: secret keys labelled LABEL on TOKEN (user login), any object count when
# LABEL is empty.
count() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" -l -p "$TEST_USER_PIN" -O \
		--type secrkey ${2:+--label "$2"} 2>/dev/null | grep -c '^Secret Key Object'
}

# All or nothing: m2 refuses the creation; nothing is left on m1.
printf 'm2 fail-fn C_CreateObject CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"
if rk 1 create ha --so-pin-source env:P11P_SO_PIN &&
	grep -q "member 2 'm2'.*CKR_DEVICE_ERROR.*destroyed, nothing is left" "$TMP/rk.err" &&
	[ "$(count m1)" = 0 ] && [ "$(count m2)" = 0 ]; then
	pass "replkey: a member that fails: the key made on the other is destroyed"
else
	fail "replkey: a member that fails: the key made on the other is destroyed" \
		"$(cat "$TMP/rk.err"; count m1)"
fi
printf 'm2 absent\n' >"$P11SHIM_CONTROL"
if rk 1 create ha --so-pin-source env:P11P_SO_PIN &&
	grep -q "member 2 'm2'.*nothing was created" "$TMP/rk.err" && [ "$(count m1)" = 0 ]; then
	pass "replkey: a member missing: nothing is created"
else
	fail "replkey: a member missing: nothing is created" "$(cat "$TMP/rk.err")"
fi
: >"$P11SHIM_CONTROL"

# No SO PIN (no terminal, no source) on a token that wants the SO for CKA_TRUSTED.
if rk 1 create ha </dev/null && grep -q 'use --so-pin-source' "$TMP/rk.err" &&
	[ "$(count m1)" = 0 ] && [ "$(count m2)" = 0 ]; then
	pass "replkey: no SO PIN: refused, nothing left (no orphan of the refused CKA_TRUSTED)"
else
	fail "replkey: no SO PIN: refused, nothing left" "$(cat "$TMP/rk.err"; count m1; count m2)"
fi
if rk 1 create nolabel --so-pin-source env:P11P_SO_PIN &&
	grep -q 'no ha.replication_key.*--label' "$TMP/rk.err"; then
	pass "replkey: a slot without ha.replication_key and no --label: refused"
else
	fail "replkey: a slot without ha.replication_key and no --label: refused"
fi
if rk 2 create ha --so-pin=1234 && grep -q 'never accepted on the command line' "$TMP/rk.err"; then
	pass "replkey: an SO PIN on argv is refused"
else
	fail "replkey: an SO PIN on argv is refused"
fi

# The key, made by the SO (SoftHSM2), one value on both members.
if rk 0 create ha --json --so-pin-source env:P11P_SO_PIN &&
	jq -e '.ok == true and .label == "repl" and (.check_value | test("^[0-9a-f]{6}$")) and
		(.id | test("^[0-9a-f]{32}$")) and (.members | length) == 2 and
		all(.members[]; .trusted == "so-public")' "$TMP/rk.out" >/dev/null &&
	[ "$(count m1 repl)" = 1 ] && [ "$(count m2 repl)" = 1 ]; then
	pass "replkey: create --json: the key on both members, made by the SO"
else
	fail "replkey: create --json" "$(cat "$TMP/rk.out" "$TMP/rk.err")"
fi
if pkcs11-tool --module "$SOFTHSM_MODULE" --token-label m1 -O --type secrkey --label repl \
	2>/dev/null | grep -q 'wrap, unwrap' &&
	! pkcs11-tool --module "$SOFTHSM_MODULE" --token-label m1 -O --type secrkey --label repl \
		2>/dev/null | grep -Eq 'encrypt|decrypt|extractable$'; then
	pass "replkey: wrap and unwrap only, not extractable"
else
	fail "replkey: wrap and unwrap only, not extractable"
fi
if rk 1 create ha --so-pin-source env:P11P_SO_PIN &&
	grep -q "has a secret key labelled 'repl' already; nothing was created" "$TMP/rk.err" &&
	[ "$(count m1 repl)" = 1 ] && [ "$(count m2 repl)" = 1 ]; then
	pass "replkey: refused when the key exists"
else
	fail "replkey: refused when the key exists" "$(cat "$TMP/rk.err")"
fi
# A second key with another label, in text mode.
printf '%s\n' "$TEST_SO_PIN" >"$TMP/so.pin"
chmod 600 "$TMP/so.pin"
if rk 0 create ha --label repl2 --so-pin-source "file:$TMP/so.pin" &&
	grep -q "member 2 'm2': key 'repl2' created (by the security officer" "$TMP/rk.out" &&
	grep -Eq "on 2 members, the same value everywhere \(check value [0-9a-f]{6}\)" "$TMP/rk.out"; then
	pass "replkey: create --label, SO PIN from a file, text output per member"
else
	fail "replkey: create --label, SO PIN from a file" "$(cat "$TMP/rk.out" "$TMP/rk.err")"
fi

# Replication through the module with the key the command made.
if run_prog "$BUILD/tests/repltest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$TMP/calls.log" copy \
	quick >"$TMP/copy.out" 2>&1; then
	pass "replkey: new keys replicate through the slot under the new key"
else
	fail "replkey: new keys replicate through the slot" "$(tail -20 "$TMP/copy.out")"
fi

# The value never appears: no 64-hex-digit run nor key bytes in what the command printed.
if ! grep -Eq '[0-9a-f]{64}' "$TMP/all.out"; then
	pass "replkey: no key value in the output"
else
	fail "replkey: no key value in the output"
fi
