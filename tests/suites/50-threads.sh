# Concurrency and fork: tests/progs/threads.c (N threads, each its own
# session, RSA sign/verify + AES-GCM round trips, all checked) and
# tests/progs/forktest.c (a forked child must re-initialize; the parent goes
# on). Through the proxy, and directly against SoftHSM2 as a baseline. The
# proxy must also give CKR_CRYPTOKI_NOT_INITIALIZED in a forked child before
# its C_Initialize (--expect-fork-reinit); SoftHSM2 does not, so the direct
# run does not ask for it. Valgrind mode: proxy only, 2 threads x 5.
# tests/progs/sessstress.c: sessions opened, shared, used and closed by N
# threads at once (the proxy's lock-free session table, its session pool and
# session locks), then the same with every thread on two sessions; through the
# proxy only (SoftHSM2 reuses handles at once).

thr_prog=$BUILD/tests/threads
thr_fork=$BUILD/tests/forktest
thr_sess=$BUILD/tests/sessstress

# thr_run NAME COMMAND...: output shown on failure.
thr_run() {
	local name=$1 rc=0 out
	shift
	out=$TMP/out.$RANDOM
	run_prog "$@" >"$out" 2>&1 || rc=$?
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "exit $rc"
		grep -v '^child: ok\|^parent: ok' "$out" | tail -n 30 | sed 's/^/    /'
	fi
}

thr_main() {
	local n=8 iter=50 secs=3 p
	mk_tmp
	for p in "$thr_prog" "$thr_fork" "$thr_sess"; do
		if [ ! -x "$p" ]; then
			fail "threads: programs built" "$p missing (make tests)"
			return 0
		fi
	done
	if ! softhsm_setup "$TMP" m1; then
		fail "threads: softhsm setup" "softhsm2-util --init-token failed"
		return 0
	fi
	if [ "$MODE" = valgrind ]; then
		n=2
		iter=5
		secs=1
	else
		thr_run "threads: softhsm2 directly ${n}x$iter" \
			"$thr_prog" "$SOFTHSM_MODULE" m1 "$TEST_USER_PIN" $n $iter
		thr_run "forktest: softhsm2 directly" \
			"$thr_fork" "$SOFTHSM_MODULE" m1 "$TEST_USER_PIN"
	fi
	if [ ! -e "$PROXY_MODULE" ]; then
		fail "threads: through proxy" "$PROXY_MODULE does not exist (proxy not built)"
		return 0
	fi
	proxy_conf "$TMP/proxy.yaml" m1
	thr_run "threads: through proxy ${n}x$iter" \
		"$thr_prog" "$PROXY_MODULE" v-m1 "$TEST_USER_PIN" $n $iter
	thr_run "forktest: through proxy (child must re-initialize)" \
		"$thr_fork" --expect-fork-reinit "$PROXY_MODULE" v-m1 "$TEST_USER_PIN"
	# The child forked while the parent's statistics writer is mid-write (held at a FIFO):
	# its C_Initialize takes the parent's buffers over, none lost (valgrind, LeakSanitizer).
	thr_run "forktest: forked mid-write of the statistics file, the child loses no buffer" \
		"$thr_fork" --expect-fork-reinit --stall-stats "$TMP" "$PROXY_MODULE" v-m1 \
		"$TEST_USER_PIN"
	thr_run "sessions: shared by $n threads, opened and closed at once, ${secs} s, through proxy" \
		"$thr_sess" "$PROXY_MODULE" v-m1 "$TEST_USER_PIN" $n $secs
	# All threads on two sessions: calls queue and sleep on each session's lock (its word
	# also counts the references) while those sessions are closed and replaced.
	thr_run "sessions: $n threads crowding onto 2 sessions, ${secs} s, through proxy" \
		"$thr_sess" "$PROXY_MODULE" v-m1 "$TEST_USER_PIN" $n $secs 2
}

thr_main
