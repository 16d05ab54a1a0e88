# The virtual-key store (SQLite) across processes (tests/progs/indexkill.c),
# and the old journal's reader under the fuzz driver (tests/fuzz/fuzz_index.c
# with standalone.c):
#  - two writer processes committing different keys at once: nothing lost;
#  - a writer killed with SIGKILL at random moments, again and again: the
#    store loads after every kill and holds every transaction the writer
#    reported committed (and no partial one);
#  - the journal reader (index import) over the seed corpus and mutants of
#    it, bounded in time.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).
#
# INDEX_KILLS overrides the number of kill rounds; FUZZ_SECONDS the fuzz time.

KILL=$BUILD/tests/indexkill
FUZZ_PROG=$BUILD/tests/fuzz_index
case $MODE in
valgrind) per_writer=100 kills=${INDEX_KILLS:-6} secs=${FUZZ_SECONDS:-8} per_input=120 ;;
asan) per_writer=500 kills=${INDEX_KILLS:-20} secs=${FUZZ_SECONDS:-10} per_input=20 ;;
*) per_writer=500 kills=${INDEX_KILLS:-20} secs=${FUZZ_SECONDS:-10} per_input=10 ;;
esac

mk_tmp
chmod 700 "$TMP"

if [ ! -x "$KILL" ]; then
	fail "index: concurrent writers" "no $KILL (run make tests)"
	fail "index: kill -9 loop" "no $KILL (run make tests)"
else
	# (a) two processes, different keys, at the same time; batches of 1..3.
	idx=$TMP/concurrent
	run_prog "$KILL" writer "$idx" A "$per_writer" 3 >"$TMP/a.out" 2>"$TMP/a.err" &
	pid_a=$!
	run_prog "$KILL" writer "$idx" B "$per_writer" 3 >"$TMP/b.out" 2>"$TMP/b.err"
	rc_b=$?
	wait $pid_a
	rc_a=$?
	if [ $rc_a -eq 0 ] && [ $rc_b -eq 0 ] &&
		run_prog "$KILL" check "$idx" A "$per_writer" >"$TMP/check.out" 2>&1 &&
		run_prog "$KILL" check "$idx" B "$per_writer" >>"$TMP/check.out" 2>&1; then
		sed 's/^/    /' "$TMP/check.out"
		pass "index: concurrent writers (2 x $per_writer transactions)"
	else
		cat "$TMP/a.err" "$TMP/b.err" "$TMP/check.out" 2>/dev/null | tail -n 20 | sed 's/^/    /'
		fail "index: concurrent writers" "writers exit $rc_a/$rc_b"
	fi

	# (b) kill -9 at random moments. Each round's writer has its own prefix;
	# after each kill every round so far is checked, so a later writer's
	# recovery cannot lose an earlier round's commits. Batches of up to 50
	# keys make the kills land inside transactions too.
	idx=$TMP/killed
	ok=1
	why=
	total=0
	# Not through run_prog: a backgrounded shell function is a subshell, and
	# the kill must hit the writer itself (or valgrind running it).
	wrap=()
	if [ "$MODE" = valgrind ]; then
		wrap=(valgrind -q --error-exitcode=99 --leak-check=no
			--suppressions="$SRCDIR/tests/valgrind.supp")
	fi
	for round in $(seq 1 "$kills"); do
		rep=$TMP/round$round
		"${wrap[@]}" "$KILL" writer "$idx" "R$round" 0 50 >"$rep" 2>"$TMP/w.err" &
		pid=$!
		# 20..420 ms; more under valgrind, whose start-up alone is slow
		ms=$((20 + RANDOM % 400))
		[ "$MODE" = valgrind ] && ms=$((ms + 1500))
		sleep "$(awk -v ms=$ms 'BEGIN { printf "%.3f", ms / 1000 }')"
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
		for r in $(seq 1 "$round"); do
			# Only whole lines count: the last one may have been cut by the kill.
			n=$(grep -c '^[0-9][0-9]*$' "$TMP/round$r")
			if ! run_prog "$KILL" check "$idx" "R$r" "$n" >"$TMP/c.out" 2>&1; then
				ok=0
				why="round $round, checking round $r"
				sed 's/^/    /' "$TMP/c.out" "$TMP/w.err"
				break 2
			fi
		done
		total=$((total + n))
	done
	if [ $ok -eq 1 ]; then
		pass "index: kill -9 loop ($kills kills, $total transactions reported and found)"
	else
		fail "index: kill -9 loop" "$why"
	fi
fi

# (c) the loader under the fuzz driver
if [ ! -x "$FUZZ_PROG" ]; then
	fail "fuzz: journal reader" "no $FUZZ_PROG (run make tests)"
	exit 0
fi
log=$TMP/fuzz.log
if run_prog "$FUZZ_PROG" -t "$secs" -s "${FUZZ_SEED:-1}" -T "$per_input" -n 100000000 \
	-w "$TMP/input" "$SRCDIR/tests/fuzz/corpus/index" >"$log" 2>&1; then
	sed 's/^/    /' "$log"
	pass "fuzz: journal reader"
else
	rc=$?
	tail -n 60 "$log" | sed 's/^/    /'
	keep=$BUILD/tests/fuzz_index-failure.idx
	if cp "$TMP/input" "$keep" 2>/dev/null; then
		echo "    last input: $keep (rerun alone: $FUZZ_PROG -n 0 $keep)"
	fi
	fail "fuzz: journal reader" "exit $rc"
fi
