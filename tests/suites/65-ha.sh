# HA slot lists through the fault-injecting shim: failover, failback, all down,
# client errors, balance, replay of multi-part operations and finds, objects.
mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "ha: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
member() {
	printf '      - backend: shim\n        token_label: %s\n' "$1"
}
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: ha\n    ha: { mode: failover, probe_interval: 100ms, single_member_keys: true }\n'
	printf '    policy: { write_back: true }\n    members:\n'
	member m1
	member m2
	printf '  - label: bal\n    ha: { mode: balance, probe_interval: 100ms }\n    members:\n'
	member m1
	member m2
	printf '  - label: hang\n    ha: { probe_interval: 100ms, call_timeout: 300ms }\n'
	printf '    members:\n'
	member m1
	member m2
	printf '  - label: v-m1\n    members:\n'
	member m1
	printf '  - label: v-m2\n    members:\n'
	member m2
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml

# Each case on fresh tokens would be slow; the keys are imported once per run with new
# labels avoided by re-initialising the tokens between cases instead.
reset_tokens() {
	rm -rf "$TMP/tokens" && mkdir -p "$TMP/tokens" && softhsm_setup "$TMP" m1 m2 >/dev/null
}
storm=10000
[ "$MODE" = valgrind ] && storm=400
for case in ${HA_CASES:-failover alldown client balance multipart find objects unknown rename hang "storm $storm"}; do

	reset_tokens || { fail "ha: token reset"; continue; }
	# shellcheck disable=SC2086
	check "ha: $case" run_prog "$BUILD/tests/hatest" "$PROXY_MODULE" "$P11SHIM_CONTROL" \
		"$P11SHIM_LOG" $case
done
