# The backend session pool (lib/virt/session.c, tests/progs/sesspool.c): open + close with a
# logged-in session held reaches the token about once, not each time; sessions that made a
# session object, left an operation active or met an error are closed, never reused; R/O and
# R/W are kept apart; the slot's last close closes the pool (the token logs out); sessions the
# token lost are not handed out. Through the fault-injecting shim, whose call log counts the
# calls that reach the token: on a slot with one member and on an HA pair.
mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "sesspool: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: one\n    members:\n      - backend: shim\n        token_label: m1\n'
	printf '  - label: ha\n    ha: { probe_interval: 100ms, single_member_keys: true }\n    members:\n'
	printf '      - backend: shim\n        token_label: m1\n'
	printf '      - backend: shim\n        token_label: m2\n'
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml

limit=60
[ "$MODE" = valgrind ] && limit=300
for slot in one ha; do
	rm -rf "$TMP/tokens" "$TMP/state" && mkdir -p "$TMP/tokens" "$TMP/state" &&
		softhsm_setup "$TMP" m1 m2 >/dev/null || { fail "sesspool: token reset"; continue; }
	: >"$P11SHIM_CONTROL"
	: >"$P11SHIM_LOG"
	rc=0
	run_prog_timeout "$limit" "$BUILD/tests/sesspool" "$PROXY_MODULE" "$P11SHIM_CONTROL" \
		"$P11SHIM_LOG" "$slot" m1 >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ $rc -eq 0 ] || ! lsan_tracer_crash_only "$TMP/out" "$TMP/err" || rc=0
	if [ $rc -eq 0 ]; then
		pass "sesspool: slot $slot ($(grep -c '^ok' "$TMP/out") checks)"
	else
		fail "sesspool: slot $slot" "exit $rc"
		grep -v '^ok' "$TMP/out" | sed 's/^/    /'
		grep -v '^p11proxy: slot' "$TMP/err" | tail -n 15 | sed 's/^/    /'
	fi
done
