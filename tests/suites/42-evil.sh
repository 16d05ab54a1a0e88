# A malicious backend behind the proxy (issue 9: a backend is untrusted input). The test
# module tests/evil/evil.c (build/tests/libevil.so) lies on command (EVIL_LIE) about lengths,
# counts, handles and its function list; tests/progs/eviltest.c drives the proxy over it,
# once per lie and slot of $TMP/proxy.yaml:
#   single  the evil token is its only member;
#   ha      the evil token is member 1, a SoftHSM2 token (EC P-256 key, CKA_ID 01, label "k")
#           member 2;
#   hato    the same with call_timeout (calls on the backend layer's worker).
# Each ok/FAIL line of eviltest is one check here. Every run must also end cleanly: exit 0,
# and in asan / valgrind mode no report (the sanitizers stop the run with a non-zero exit).
# EVIL_LIES and EVIL_CONFIGS pick lies and slots, e.g.
#   EVIL_LIES="signlen attrlen" ONLY=42-evil tests/run.sh build valgrind

evil_lib=$BUILD/tests/libevil.so
evil_prog=$BUILD/tests/eviltest

# evil_conf FILE single|ha: the proxy's configuration. single: slot "single" (the evil token
# alone); ha: slots "ha" and "hato" (the evil token, then the SoftHSM2 token). Its state_dir
# does not exist: no virtual-key index, so the proxy reads no attribute the test does not ask
# for. probe_interval is long: no probe runs in the middle of a check.
evil_conf() {
	{
		printf 'state_dir: %s\n' "$TMP/no-state"
		printf 'backends:\n  - name: evil\n    module: %s\n' "$evil_lib"
		[ "$2" = ha ] && printf '  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
		printf 'slots:\n'
		if [ "$2" = single ]; then
			printf '  - label: single\n    members:\n'
			printf '      - backend: evil\n        token_label: evil\n'
		fi
		for slot in $([ "$2" = ha ] && echo ha hato); do
			printf '  - label: %s\n' "$slot"
			if [ "$slot" = hato ]; then
				printf '    ha: { mode: failover, probe_interval: 60s, call_timeout: 20s }\n'
			else
				printf '    ha: { mode: failover, probe_interval: 60s }\n'
			fi
			printf '    members:\n'
			printf '      - backend: evil\n        token_label: evil\n'
			printf '      - backend: softhsm\n        token_label: m2\n'
		done
	} >"$1"
}

# evil_run CONFIG LIE: one eviltest run; its checks, then how it ended.
evil_run() {
	local conf=$1 lie=$2 out=$TMP/out.$1.$2 err=$TMP/err.$1.$2 rc=0 yaml=$TMP/ha.yaml
	[ "$conf" = single ] && yaml=$TMP/single.yaml
	P11PROXY_CONF=$yaml run_prog_timeout "$limit" "$evil_prog" "$PROXY_MODULE" "$evil_lib" \
		"$conf" "$lie" >"$out" 2>"$err" || rc=$?
	while IFS= read -r line; do
		case $line in
		"ok "*) pass "evil: ${line#ok }" ;;
		"FAIL "*) fail "evil: ${line#FAIL }" ;;
		esac
	done <"$out"
	if [ $rc -eq 0 ]; then
		pass "evil: $conf $lie: eviltest exits 0, no sanitizer or valgrind report"
	else
		[ $rc -eq 124 ] && echo "    killed after $limit s"
		fail "evil: $conf $lie: eviltest exits 0, no sanitizer or valgrind report" "exit $rc"
		# ASan ("==PID==ERROR: ..."), UBSan ("...: runtime error: ..."), valgrind ("==PID== ...").
		if grep -qE '^==[0-9]+==(ERROR| [A-Z])|runtime error' "$err"; then
			grep -m 1 -A 24 -E '^==[0-9]+==(ERROR| [A-Z])|runtime error' "$err" |
				sed 's/^/    /'
		else
			grep -v '^ok ' "$out" | tail -n 10 | sed 's/^/    /'
			tail -n 30 "$err" | sed 's/^/    /'
		fi
	fi
	# The proxy says why it refused what a backend answered.
	case $lie in
	none)
		if grep -q 'refused' "$err"; then
			fail "evil: $conf none: the proxy refused nothing (control)"
			grep 'refused' "$err" | head -n 3 | sed 's/^/    /'
		else
			pass "evil: $conf none: the proxy refused nothing (control)"
		fi
		;;
	nolist | badversion)
		if grep -q 'C_GetFunctionList of .*: not a PKCS#11 2.x module' "$err"; then
			pass "evil: $conf $lie: the proxy says the module is not a PKCS#11 2.x module"
		else
			fail "evil: $conf $lie: the proxy says the module is not a PKCS#11 2.x module"
		fi
		;;
	*)
		if grep -q "backend 'evil': .*refused" "$err"; then
			pass "evil: $conf $lie: the proxy logs the refusal"
		else
			fail "evil: $conf $lie: the proxy logs the refusal"
		fi
		;;
	esac
}

evil_main() {
	local limit=60 conf lie
	[ "$MODE" = valgrind ] && limit=300
	mk_tmp
	if [ ! -e "$evil_lib" ] || [ ! -x "$evil_prog" ] || [ ! -e "$PROXY_MODULE" ]; then
		fail "evil: built" "$evil_lib, $evil_prog or $PROXY_MODULE missing (make tests)"
		return 0
	fi
	if ! softhsm_setup "$TMP" m2; then
		fail "evil: softhsm setup" "softhsm2-util --init-token failed"
		return 0
	fi
	if ! command -v pkcs11-tool >/dev/null; then
		fail "evil: pkcs11-tool installed" "it makes the SoftHSM2 key (tests/install-deps.sh)"
		return 0
	fi
	# The HA member's key, made on SoftHSM2 directly (no proxy involved).
	if ! pkcs11-tool --module "$SOFTHSM_MODULE" --token-label m2 --login \
		--pin "$TEST_USER_PIN" --keypairgen --key-type EC:prime256v1 --id 01 --label k \
		>"$TMP/keygen.out" 2>&1; then
		fail "evil: SoftHSM2 key" "pkcs11-tool --keypairgen failed"
		sed 's/^/    /' "$TMP/keygen.out"
		return 0
	fi
	evil_conf "$TMP/single.yaml" single
	evil_conf "$TMP/ha.yaml" ha
	for conf in ${EVIL_CONFIGS:-single ha hato}; do
		for lie in ${EVIL_LIES:-none nolist badversion slotcount hugelist mechcount findcount \
			attrlen signlen nullsession nullobject nullhandle}; do
			evil_run "$conf" "$lie"
		done
	done
}

evil_main
