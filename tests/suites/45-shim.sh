# The fault-injecting test module (tests/shim/shim.c, build/tests/libshim.so)
# that the HA tests kill members with. tests/progs/shimtest.c loads it directly
# over a hermetic SoftHSM2 with tokens m1 and m2 and checks every control-file
# action on m1 while m2 keeps working; then the proxy is run once over the shim
# (pkcs11-tool -L must show both virtual slots, and the shim's call log must
# show the proxy's calls reaching the tokens). Valgrind mode: shimtest under
# valgrind (about 5 s).

shim_lib=$BUILD/tests/libshim.so
shim_prog=$BUILD/tests/shimtest

shim_main() {
	local out rc=0 real=$SOFTHSM_MODULE
	mk_tmp
	if [ ! -e "$shim_lib" ] || [ ! -x "$shim_prog" ]; then
		fail "shim: built" "$shim_lib or $shim_prog missing (make tests)"
		return 0
	fi
	if ! softhsm_setup "$TMP" m1 m2; then
		fail "shim: softhsm setup" "softhsm2-util --init-token failed"
		return 0
	fi
	mkdir "$TMP/run"
	out=$TMP/shimtest.out
	P11SHIM_MODULE=$real run_prog "$shim_prog" "$shim_lib" "$TEST_USER_PIN" "$TMP/run" \
		>"$out" 2>&1 || rc=$?
	if [ $rc -eq 0 ]; then
		pass "shim: fail, after, count, fail-fn, drop, absent, hang, slow, log, threads, fork"
	else
		fail "shim: shimtest" "exit $rc"
		grep -v '^ok ' "$out" | tail -n 30 | sed 's/^/    /'
	fi
	if grep -q "control:2: unknown action 'frobnicate'" "$out"; then
		pass "shim: an unknown line is reported on stderr with file:line"
	else
		fail "shim: an unknown line is reported on stderr with file:line"
	fi

	# Once through the proxy: the shim as the backend module.
	if [ ! -e "$PROXY_MODULE" ]; then
		fail "shim: through the proxy" "$PROXY_MODULE does not exist (proxy not built)"
		return 0
	fi
	if ! command -v pkcs11-tool >/dev/null; then
		skip "shim: through the proxy" "pkcs11-tool not installed"
		return 0
	fi
	# pkcs11-tool is not built with the sanitizers, so it cannot load an ASan module.
	if [ "$MODE" = asan ]; then
		skip "shim: through the proxy" "pkcs11-tool cannot load the ASan module"
		return 0
	fi

	SOFTHSM_MODULE=$shim_lib proxy_conf "$TMP/proxy.yaml" m1 m2
	: >"$TMP/proxy.control"
	rc=0
	P11SHIM_MODULE=$real P11SHIM_CONTROL=$TMP/proxy.control P11SHIM_LOG=$TMP/proxy.log \
		pkcs11-tool --module "$PROXY_MODULE" -L >"$out" 2>&1 || rc=$?
	if [ $rc -eq 0 ] && grep -q 'token label *: v-m1' "$out" &&
		grep -q 'token label *: v-m2' "$out"; then
		pass "shim: pkcs11-tool -L through the proxy over the shim"
	else
		fail "shim: pkcs11-tool -L through the proxy over the shim" "exit $rc"
		tail -n 20 "$out" | sed 's/^/    /'
	fi
	if grep -q '^C_GetTokenInfo m1 CKR_OK$' "$TMP/proxy.log" 2>/dev/null &&
		grep -q '^C_GetTokenInfo m2 CKR_OK$' "$TMP/proxy.log"; then
		pass "shim: the call log shows the proxy's calls per token"
	else
		fail "shim: the call log shows the proxy's calls per token"
	fi
}

shim_main
