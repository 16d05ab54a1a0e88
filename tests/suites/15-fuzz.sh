# The proxy.yaml parser under the standalone fuzz driver: every seed in
# tests/fuzz/corpus/config and tests/data/config, then random mutations of
# them with a fixed seed, for a bounded time. The target checks its own oracle
# (tests/fuzz/fuzz_config.c); this suite passes when the run exits 0, and ASan
# or valgrind turn memory errors and leaks into a non-zero exit.
# Sourced by tests/run.sh with tests/lib.sh loaded. `make fuzz` is the
# coverage-guided libFuzzer run; this is its smoke test in every build.
#
# FUZZ_SECONDS overrides the time bound; FUZZ_SEED the mutation seed.

FUZZ_PROG=$BUILD/tests/fuzz_config
case $MODE in
# valgrind runs ~40x slower: fewer mutants, and a per-input limit that allows for it.
valgrind) secs=${FUZZ_SECONDS:-20} per_input=120 ;;
*) secs=${FUZZ_SECONDS:-10} per_input=10 ;;
esac
seed=${FUZZ_SEED:-1}

if [ ! -x "$FUZZ_PROG" ]; then
	fail "fuzz: config parser" "no $FUZZ_PROG (run make tests)"
	exit 0
fi

mk_tmp
log=$TMP/log
if run_prog "$FUZZ_PROG" -t "$secs" -s "$seed" -T "$per_input" -n 100000000 \
	-x "$SRCDIR/tests/fuzz/config.dict" -w "$TMP/input" \
	"$SRCDIR/tests/fuzz/corpus/config" "$SRCDIR/tests/data/config" >"$log" 2>&1; then
	sed 's/^/    /' "$log"
	pass "fuzz: config parser"
else
	rc=$?
	tail -n 60 "$log" | sed 's/^/    /'
	# The driver writes each input before running it: after a crash, an oracle
	# abort or a hang it is the culprit (a leak report at exit may be older).
	keep=$BUILD/tests/fuzz_config-failure.yaml
	if cp "$TMP/input" "$keep" 2>/dev/null; then
		echo "    last input: $keep (rerun alone: $FUZZ_PROG -n 0 $keep)"
	fi
	fail "fuzz: config parser" "exit $rc"
fi

# The member-order overlay parser (a file every process reads): its own
# oracle (tests/fuzz/fuzz_order.c), half the config parser's time.
ORDER_PROG=$BUILD/tests/fuzz_order
if [ ! -x "$ORDER_PROG" ]; then
	fail "fuzz: member-order overlay parser" "no $ORDER_PROG (run make tests)"
elif run_prog "$ORDER_PROG" -t $((secs / 2)) -s "$seed" -T "$per_input" -n 100000000 \
	-w "$TMP/order-input" "$SRCDIR/tests/fuzz/corpus/order" >"$TMP/order.log" 2>&1; then
	sed 's/^/    /' "$TMP/order.log"
	pass "fuzz: member-order overlay parser"
else
	rc=$?
	tail -n 40 "$TMP/order.log" | sed 's/^/    /'
	echo "    last input: $TMP/order-input"
	fail "fuzz: member-order overlay parser" "exit $rc"
fi

# The key-management policy overlay parser (a file every process reads).
POLICY_PROG=$BUILD/tests/fuzz_policy
if [ ! -x "$POLICY_PROG" ]; then
	fail "fuzz: policy overlay parser" "no $POLICY_PROG (run make tests)"
elif run_prog "$POLICY_PROG" -t $((secs / 4 > 0 ? secs / 4 : 1)) -s "$seed" -T "$per_input" \
	-n 100000000 -w "$TMP/policy-input" "$SRCDIR/tests/fuzz/corpus/policy" \
	>"$TMP/policy.log" 2>&1; then
	sed 's/^/    /' "$TMP/policy.log"
	pass "fuzz: policy overlay parser"
else
	rc=$?
	tail -n 40 "$TMP/policy.log" | sed 's/^/    /'
	echo "    last input: $TMP/policy-input"
	fail "fuzz: policy overlay parser" "exit $rc"
fi

# The statistics file parser (the metrics listener reads every process's file).
STATS_PROG=$BUILD/tests/fuzz_stats
if [ ! -x "$STATS_PROG" ]; then
	fail "fuzz: statistics file parser" "no $STATS_PROG (run make tests)"
elif run_prog "$STATS_PROG" -t $((secs / 4 > 0 ? secs / 4 : 1)) -s "$seed" -T "$per_input" \
	-n 100000000 -x "$SRCDIR/tests/fuzz/stats.dict" -w "$TMP/stats-input" \
	"$SRCDIR/tests/fuzz/corpus/stats" >"$TMP/stats.log" 2>&1; then
	sed 's/^/    /' "$TMP/stats.log"
	pass "fuzz: statistics file parser"
else
	rc=$?
	tail -n 40 "$TMP/stats.log" | sed 's/^/    /'
	echo "    last input: $TMP/stats-input"
	fail "fuzz: statistics file parser" "exit $rc"
fi

# The binary COPY reader the PostgreSQL store loads its records with (the server's stream is
# untrusted): the target checks types, lengths and that the answer does not depend on how the
# stream was cut (tests/fuzz/fuzz_pgcopy.c).
PGCOPY_PROG=$BUILD/tests/fuzz_pgcopy
if [ ! -x "$PGCOPY_PROG" ]; then
	fail "fuzz: binary COPY reader" "no $PGCOPY_PROG (run make tests)"
elif run_prog "$PGCOPY_PROG" -t $((secs / 4 > 0 ? secs / 4 : 1)) -s "$seed" -T "$per_input" \
	-n 100000000 -w "$TMP/pgcopy-input" "$SRCDIR/tests/fuzz/corpus/pgcopy" \
	>"$TMP/pgcopy.log" 2>&1; then
	sed 's/^/    /' "$TMP/pgcopy.log"
	pass "fuzz: binary COPY reader"
else
	rc=$?
	tail -n 40 "$TMP/pgcopy.log" | sed 's/^/    /'
	echo "    last input: $TMP/pgcopy-input"
	fail "fuzz: binary COPY reader" "exit $rc"
fi
