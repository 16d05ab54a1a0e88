# HA faults the application must not see (issue 9), through the fault-injecting shim
# (tests/progs/hafaults.c): an HSM restarting under load, members failing by turns, a hung
# member's probe, C_Finalize with a hung call and with calls in flight on other threads, short
# output buffers with call_timeout, stale object handles. Checks marked "(control)" run where
# the property holds (SoftHSM2 or the shim without the proxy, or no fault) and show the harness
# is sound. HAFAULTS_CASES picks groups
# (control restart alternate hungprobe bufsize rehandle), e.g.
#   HAFAULTS_CASES=bufsize ONLY=64-hafaults tests/run.sh build valgrind
mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "hafaults: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
hf_member() {
	printf '      - backend: shim\n        token_label: %s\n' "$1"
}
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: ha\n    ha: { probe_interval: 100ms, single_member_keys: true }\n'
	printf '    members:\n'
	hf_member m1
	hf_member m2
	printf '  - label: hang\n'
	printf '    ha: { probe_interval: 100ms, call_timeout: 300ms, single_member_keys: true }\n'
	printf '    members:\n'
	hf_member m1
	hf_member m2
	printf '  - label: slowprobe\n'
	printf '    ha: { probe_interval: 3600s, single_member_keys: true }\n'
	printf '    members:\n'
	hf_member m1
	hf_member m2
	printf '  - label: v-m1\n    members:\n'
	hf_member m1
	printf '  - label: v-m2\n    members:\n'
	hf_member m2
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml

hf_reset() {
	rm -rf "$TMP/tokens" "$TMP/state" && mkdir -p "$TMP/tokens" "$TMP/state" &&
		softhsm_setup "$TMP" m1 m2 >/dev/null && : >"$P11SHIM_CONTROL"
}

# hf NAME LIMIT MODULE ARGS...: fresh tokens, then hafaults under `timeout LIMIT` (seconds);
# its ok/FAIL lines are shown when it fails. HF_DIRECT=1: keys go on the tokens themselves.
hf() {
	local name=$1 limit=$2 module=$3 rc=0 t0
	shift 3
	hf_reset || {
		fail "$name" "token reset"
		return
	}
	t0=$(date +%s)
	HAFAULTS_DIRECT=${HF_DIRECT:-0} HAFAULTS_SLOW=$([ "$MODE" = valgrind ] && echo 1) \
		run_prog_timeout "$limit" "$BUILD/tests/hafaults" \
		"$module" "$P11SHIM_CONTROL" "$P11SHIM_LOG" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ $rc -eq 0 ] || ! lsan_tracer_crash_only "$TMP/out" "$TMP/err" || rc=0
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		[ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "    killed after $limit s"
		fail "$name" "exit $rc after $(($(date +%s) - t0)) s"
		sed 's/^/    /' "$TMP/out"
		if grep -q '^==[0-9]*== [A-Z]' "$TMP/err"; then
			# valgrind: its first error (heap damage may make it abort later)
			grep -m 1 -A 11 '^==[0-9]*== [A-Z]' "$TMP/err" | sed 's/^/    /'
		else
			grep -v '^p11proxy: slot' "$TMP/err" | tail -n 15 | sed 's/^/    /'
		fi
	fi
}

signs=1000 secs=5 rsigns=3000 limit=60 back=5
if [ "$MODE" = valgrind ]; then
	# hafaults: HAFAULTS_SLOW (turns of 900 ms: 9 s for the harness's 8 turns and more)
	signs=40 secs=10 rsigns=300 limit=240 back=15
fi
cases=${HAFAULTS_CASES:-control restart alternate hungprobe bufsize rehandle}
for c in $cases; do
	case $c in
	control)
		HF_DIRECT=1 hf "hafaults: shim rehandle rule, shim alone (control)" "$limit" \
			"$BUILD/tests/libshim.so" shimrehandle
		HF_DIRECT=1 hf "hafaults: bufsize on softhsm2 (control)" "$limit" \
			"$SOFTHSM_MODULE" bufsize m1
		HF_DIRECT=1 hf "hafaults: bad handles on softhsm2 (control)" "$limit" \
			"$SOFTHSM_MODULE" badhandle m1
		[ "$MODE" = valgrind ] && continue
		hf "hafaults: sign load without faults, 0 errors (control)" "$limit" "$PROXY_MODULE" \
			restart-nofault 250
		hf "hafaults: m2 back in time when m1 fails without hanging (control)" "$limit" \
			"$PROXY_MODULE" hungprobe fail finalize
		;;
	restart)
		hf "hafaults: m1 drops its sessions and restarts 3 times under 4-thread load: 0 errors" \
			"$limit" "$PROXY_MODULE" restart "$signs"
		;;
	alternate)
		hf "hafaults: m1, m2 fail by turns (never both) for ${secs} s under load: 0 errors" \
			"$limit" "$PROXY_MODULE" alternate "$secs"
		hf "hafaults: both down, m1 back during the revival's probe of m2: another round signs" \
			"$limit" "$PROXY_MODULE" revive
		;;
	hungprobe)
		[ "$MODE" = valgrind ] ||
			hf "hafaults: m1's probe hangs in C_OpenSession: m2 still probed back up in $back s" \
				"$limit" "$PROXY_MODULE" hungprobe open
		hf "hafaults: m1 hangs: m2 probed back up in $back s; C_Finalize returns in 10 s" \
			"$limit" "$PROXY_MODULE" hungprobe all finalize
		hf "hafaults: C_Finalize waits for the calls in flight on 3 other threads" \
			"$limit" "$PROXY_MODULE" finflight
		;;
	bufsize)
		hf "hafaults: short output buffers, call_timeout slot: CKR_BUFFER_TOO_SMALL, no overrun" \
			"$limit" "$PROXY_MODULE" bufsize hang
		hf "hafaults: short output buffers, HA slot without call_timeout" "$limit" \
			"$PROXY_MODULE" bufsize ha
		hf "hafaults: after C_Finalize no worker or probe thread of the module is left" \
			"$limit" "$PROXY_MODULE" workersgone
		;;
	rehandle)
		hf "hafaults: m1's object handles go stale 3 times in a ${rsigns}-sign session: 0 errors" \
			"$limit" "$PROXY_MODULE" rehandle "$rsigns"
		hf "hafaults: invalid handles from the application stay invalid (HA slot)" "$limit" \
			"$PROXY_MODULE" badhandle ha
		hf "hafaults: m1 fails between a find and the reads of what it found: key found on m2" \
			"$limit" "$PROXY_MODULE" findfault 2
		grep -v '^state_dir:' "$TMP/proxy.yaml" >"$TMP/proxy-novk.yaml"
		P11PROXY_CONF=$TMP/proxy-novk.yaml hf \
			"hafaults: the same without virtual keys: the handle found works after m1 fails" \
			"$limit" "$PROXY_MODULE" findfault 1
		hf "hafaults: a one-member slot's HSM restarts unseen: a session opened then is logged in" \
			"$limit" "$PROXY_MODULE" unseenrestart
		hf "hafaults: m1 loses the session an operation is replayed on: the operation goes on on m2" \
			"$limit" "$PROXY_MODULE" replaylost
		;;
	*)
		fail "hafaults: unknown case $c"
		;;
	esac
done
