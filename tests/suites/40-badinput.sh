# Bad input: tests/progs/badinput.c runs a catalogue of bad calls, each with
# the return value PKCS#11 2.40 requires (SoftHSM2's known deviations
# accepted). It must pass on SoftHSM2 directly and through the proxy, and
# never crash. In valgrind mode only the proxied run, under valgrind.

bad_prog=$BUILD/tests/badinput

# bad_run NAME MODULE LABEL
bad_run() {
	local name=$1 module=$2 label=$3 out rc=0
	out=$TMP/badinput.$RANDOM.txt
	run_prog "$bad_prog" "$module" "$label" "$TEST_USER_PIN" >"$out" 2>"$out.err" || rc=$?
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		# 126+ is a signal (a crash) or valgrind's error code, not a FAIL count.
		fail "$name" "exit $rc, $(grep -c '^FAIL' "$out") failed cases"
		grep '^FAIL' "$out" | sed 's/^/    /'
		tail -n 5 "$out" | sed 's/^/    /'
		tail -n 20 "$out.err" | sed 's/^/    /'
	fi
}

bad_main() {
	mk_tmp
	if [ ! -x "$bad_prog" ]; then
		fail "badinput: program built" "$bad_prog missing (make tests)"
		return 0
	fi
	if ! softhsm_setup "$TMP" m1; then
		fail "badinput: softhsm setup" "softhsm2-util --init-token failed"
		return 0
	fi
	if [ "$MODE" != valgrind ]; then
		bad_run "badinput: softhsm2 directly" "$SOFTHSM_MODULE" m1
	fi
	if [ ! -e "$PROXY_MODULE" ]; then
		fail "badinput: through proxy" "$PROXY_MODULE does not exist (proxy not built)"
		return 0
	fi
	proxy_conf "$TMP/proxy.yaml" m1
	bad_run "badinput: through proxy$([ "$MODE" = normal ] || echo " ($MODE)")" "$PROXY_MODULE" v-m1
}

bad_main
