# Conformance: the battery (tests/progs/battery.c) prints a normalized
# transcript of ~550 PKCS#11 steps; through the proxy it must be identical to
# SoftHSM2's own. In valgrind mode only the proxied battery runs, under
# valgrind, and passes when it exits 0.

conf_battery=$BUILD/tests/battery

# conf_run NAME MODULE LABEL OUT: runs the battery, stderr beside OUT.
conf_run() {
	local name=$1 module=$2 label=$3 out=$4 rc=0
	run_prog "$conf_battery" "$module" "$label" "$TEST_USER_PIN" >"$out" 2>"$out.err" || rc=$?
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "exit $rc"
		grep -E ': NO$' "$out" | sed 's/^/    /'
		tail -n 20 "$out.err" | sed 's/^/    /'
	fi
	return $rc
}

conf_main() {
	mk_tmp
	if [ ! -x "$conf_battery" ]; then
		fail "conformance: battery built" "$conf_battery missing (make tests)"
		return 0
	fi
	if ! softhsm_setup "$TMP" m1; then
		fail "conformance: softhsm setup" "softhsm2-util --init-token failed"
		return 0
	fi
	if [ "$MODE" != valgrind ]; then
		conf_run "conformance: battery on softhsm2" "$SOFTHSM_MODULE" m1 "$TMP/direct.txt"
	fi
	if [ ! -e "$PROXY_MODULE" ]; then
		fail "conformance: proxy == softhsm" "$PROXY_MODULE does not exist (proxy not built)"
		return 0
	fi
	# Virtual keys on (proxy_conf's state_dir), with write_back so that
	# C_SetAttributeValue and C_DestroyObject reach the token as they do
	# directly; the default policy (virtual updates) is 56-vkeys' matter.
	PROXY_POLICY="{write_back: true}" proxy_conf "$TMP/proxy.yaml" m1
	if [ "$MODE" = valgrind ]; then
		conf_run "conformance: battery through proxy (valgrind)" "$PROXY_MODULE" v-m1 \
			"$TMP/proxied.txt"
		return 0
	fi
	conf_run "conformance: battery through proxy" "$PROXY_MODULE" v-m1 "$TMP/proxied.txt"
	if diff -u --label softhsm2 --label proxy "$TMP/direct.txt" "$TMP/proxied.txt" \
		>"$TMP/diff.txt"; then
		pass "conformance: proxy == softhsm"
	else
		fail "conformance: proxy == softhsm" \
			"$(grep -c '^[-+][^-+]' "$TMP/diff.txt") differing lines"
		head -n 60 "$TMP/diff.txt" | sed 's/^/    /'
	fi
}

conf_main
