# The vendor mechanisms of p11proxy.h (tests/progs/vendortest.c) over the fault-injecting shim:
# fragment derivation (RFC 5869 vectors through SoftHSM2, derived keys, both fragment modes with
# HSM calls counted, members whose HSM keys differ), key generation from mixed entropy, and
# entropy mixing (stuck / repeating / replayed HSM RNG, processes, fork, a statistical smoke test).
mk_tmp
softhsm_setup "$TMP" f1 m1 m2 || { fail "vendor: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
export VENDOR_PIN=$TEST_USER_PIN
# The fragment value the test program knows (frag_value in vendortest.c).
FRAG=101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f
printf '{"customer_fragments": [
  {"name": "wr", "type": "hsm_wrapped", "hsm_key_label": "cf-key", "value": "%s"},
  {"name": "sec", "type": "hsm_secured", "hsm_key_label": "cf-key", "value": "%s"}]}\n' \
	"$FRAG" "$FRAG" >"$TMP/frag.json"
printf '{"customer_fragments": [
  {"name": "pf", "type": "hsm_wrapped", "hsm_key_label": "pair-key", "value": "%s"}]}\n' \
	"$FRAG" >"$TMP/pair.json"
chmod 600 "$TMP/frag.json" "$TMP/pair.json"
member() {
	printf '      - backend: shim\n        token_label: %s\n' "$1"
	[ -n "${2:-}" ] && printf '        pin: env:VENDOR_PIN\n'
	return 0
}
{
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: v-f1\n    members:\n'
	member f1
	printf '  - label: frag\n    fragments: %s\n' "$TMP/frag.json"
	printf '    entropy: { source: mix, on_hsm_failure: fail }\n    members:\n'
	member f1 pin
	printf '  - label: frag-nopin\n    fragments: %s\n    members:\n' "$TMP/frag.json"
	member f1
	printf '  - label: ent-os\n    entropy: { source: mix, on_hsm_failure: os_only }\n'
	printf '    members:\n'
	member f1
	printf '  - label: ent-hsm\n    entropy: { source: hsm, on_hsm_failure: fail }\n'
	printf '    members:\n'
	member f1
	printf '  - label: pair\n    fragments: %s\n    members:\n' "$TMP/pair.json"
	member m1 pin
	member m2 pin
	printf '  - label: v-m1\n    members:\n'
	member m1
	printf '  - label: v-m2\n    members:\n'
	member m2
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml

# vt NAME CASE ARGS...: runs one case; its output in $TMP/NAME.out.
vt() {
	local name=$1
	shift
	run_prog "$BUILD/tests/vendortest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$P11SHIM_LOG" "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err"
	local rc=$?
	[ $rc -eq 0 ] || ! lsan_tracer_crash_only "$TMP/$name.out" "$TMP/$name.err" || rc=0
	[ $rc -eq 0 ] || sed 's/^/    /' "$TMP/$name.out" "$TMP/$name.err"
	return $rc
}

check "vendor: HSM keys for the fragments (setup)" vt setup setup
check "vendor: mechanism list and info" vt mech mech
check "vendor: RFC 5869 A.1 and A.2 through the proxy (salt in SoftHSM2)" vt rfc rfc
check "vendor: derived keys: GCM and HMAC against OpenSSL, attributes, lifetime" vt derived derived
check "vendor: bad parameters and templates" vt bad bad
check "vendor: mixed-entropy key generation" vt keygen keygen
check "vendor: hsm_wrapped fragment derived at C_Initialize (member PIN)" \
	vt fragw frag frag wr wrapped-preloaded
check "vendor: hsm_wrapped fragment derived once at first use (no member PIN)" \
	vt fragw2 frag frag-nopin wr wrapped
check "vendor: hsm_secured fragment derived again for every use" vt frags frag frag sec secured
check "vendor: a fragment's HSM key needs a login" vt nologin nologin
mismatch() {
	vt mismatch mismatch && grep -q "HSM keys of members 'm1' and 'm2' differ" "$TMP/mismatch.err"
}
check "vendor: members whose HSM keys differ are detected (check value)" mismatch

check "vendor: entropy mix: a healthy HSM" vt rng-ok rng frag "" CKR_OK
check "vendor: entropy mix/fail: a stuck HSM RNG gives CKR_DEVICE_ERROR" \
	vt rng-stuck rng frag "f1 rand const 0" CKR_DEVICE_ERROR
check "vendor: entropy mix/fail: a repeating HSM RNG gives CKR_DEVICE_ERROR" \
	vt rng-cycle rng frag "f1 rand cycle 4" CKR_DEVICE_ERROR
reported() {
	vt rng-stuck2 rng frag "f1 rand const 0" CKR_DEVICE_ERROR &&
		grep -q "failed the SP 800-90B" "$TMP/rng-stuck2.err"
}
check "vendor: the failed HSM stream is reported" reported
check "vendor: entropy mix/os_only: a stuck HSM RNG, output continues" \
	vt rng-os rng ent-os "f1 rand const 0" CKR_OK
check "vendor: entropy hsm/fail: a stuck HSM RNG gives CKR_DEVICE_ERROR" \
	vt rng-hsm rng ent-hsm "f1 rand const 0" CKR_DEVICE_ERROR
check "vendor: a failing HSM C_GenerateRandom with fail policy: CKR_DEVICE_ERROR" \
	vt rng-fail rng frag "f1 fail-fn C_GenerateRandom CKR_RANDOM_NO_RNG" CKR_DEVICE_ERROR
# The same replayed HSM stream in two processes (and every call): outputs still differ.
differ() {
	vt "p1-$1" rng "$1" "f1 rand replay 42" CKR_OK &&
		vt "p2-$1" rng "$1" "f1 rand replay 42" CKR_OK &&
		a=$(grep '^random ' "$TMP/p1-$1.out") && b=$(grep '^random ' "$TMP/p2-$1.out") &&
		[ -n "$a" ] && [ "$a" != "$b" ]
}
check "vendor: constant HSM bytes (mix): output differs between calls and processes" differ frag
check "vendor: constant HSM bytes (hsm): output differs between calls and processes" differ ent-hsm
check "vendor: a forked child gets a fresh generator" vt fork fork frag
if [ "$MODE" = valgrind ]; then
	skip "vendor: 1 MiB statistical smoke test" "slow under valgrind"
else
	check "vendor: 1 MiB statistical smoke test (mix)" vt stat stat frag ""
	check "vendor: 1 MiB statistical smoke test (constant HSM bytes, os_only)" \
		vt stat2 stat ent-os "f1 rand const 7"
fi

# gen-fragment: checks the HSM key on the slot's members, prints or appends the JSON.
genfrag() {
	run_prog "$CLI" gen-fragment "$@" >"$TMP/gen.out" 2>"$TMP/gen.err"
}
gen_print() {
	genfrag --slot frag --name NEWCF --type hsm_secured --hsm-key-label cf-key &&
		jq -e '.customer_fragments | length == 1 and .[0].name == "NEWCF" and
			.[0].type == "hsm_secured" and .[0].hsm_key_label == "cf-key" and
			(.[0].value | type == "string")' "$TMP/gen.out" >/dev/null
}
check "vendor: gen-fragment prints the JSON (jq)" gen_print
gen_out() {
	cp "$TMP/frag.json" "$TMP/out.json" &&
		genfrag --slot frag --name added --type hsm_wrapped --hsm-key-label cf-key \
			--out "$TMP/out.json" &&
		[ "$(stat -c %a "$TMP/out.json")" = 600 ] &&
		jq -e '[.customer_fragments[].name] == ["wr", "sec", "added"]' "$TMP/out.json" \
			>/dev/null &&
		! genfrag --slot frag --name added --type hsm_wrapped --hsm-key-label cf-key \
			--out "$TMP/out.json" && grep -q "exists already" "$TMP/gen.err"
}
check "vendor: gen-fragment --out appends (0600), refuses a duplicate name" gen_out
gen_two() {
	genfrag --slot frag --name a --type hsm_wrapped --hsm-key-label cf-key &&
		v1=$(jq -r '.customer_fragments[0].value' "$TMP/gen.out") &&
		genfrag --slot frag --name a --type hsm_wrapped --hsm-key-label cf-key &&
		v2=$(jq -r '.customer_fragments[0].value' "$TMP/gen.out") && [ "$v1" != "$v2" ]
}
check "vendor: two generated fragments differ" gen_two
gen_missing() {
	! genfrag --slot frag --name x --type hsm_wrapped --hsm-key-label no-such-key &&
		grep -q "no secret key labelled 'no-such-key'" "$TMP/gen.err" && [ ! -s "$TMP/gen.out" ]
}
check "vendor: gen-fragment refuses a missing HSM key" gen_missing
gen_differ() {
	! genfrag --slot pair --name x --type hsm_wrapped --hsm-key-label pair-key &&
		grep -q "differ between members" "$TMP/gen.err"
}
check "vendor: gen-fragment refuses HSM keys that differ between members" gen_differ
gen_usage() {
	genfrag --slot frag --name x --type other --hsm-key-label cf-key
	[ $? -eq 2 ] && grep -q "hsm_wrapped or hsm_secured" "$TMP/gen.err"
}
check "vendor: gen-fragment usage errors (exit 2)" gen_usage
