# The PostgreSQL driver (lib/index/pg.c) against a private server (tests/pg.sh):
#  - parameters and results of every type, blobs with NULs, errors by SQLSTATE;
#  - transactions: commit, rollback, a failed transaction's commit;
#  - two connections serialised by begin; lock waits and slow statements bounded;
#  - a commit seen by another connection's changed() and notify_fd;
#  - a URI with a password refused; a forked child's abandon leaves the parent's connection;
#  - the server stopped (pg_ctl stop -m immediate): DOWN, an open transaction not
#    acknowledged, then a reconnection by itself after the restart, reported as a change;
#  - no acknowledged commit lost when the server is killed mid-write, or the writer is.
# The server runs natively in every mode; under valgrind only our programs run under it.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).

# shellcheck source=tests/pg.sh
. "$SRCDIR/tests/pg.sh"
PGDRIVER=$BUILD/tests/pgdriver

mk_tmp
if [ ! -x "$PGDRIVER" ]; then
	fail "pgstore: driver" "no $PGDRIVER (run make tests)"
	return 0 2>/dev/null || exit 0
fi
if ! pg_start "$TMP/pg"; then
	fail "pgstore: private PostgreSQL server" "$PG_WHY"
	return 0 2>/dev/null || exit 0
fi
pass "pgstore: private PostgreSQL server ($(basename "$(dirname "$PG_BIN")"), socket in the test's directory)"
URI=$(pg_uri)

# drv NAME TEST: one pgdriver test; its stdout shown indented.
drv() {
	local name=$1
	shift
	if run_prog_timeout 120 "$PGDRIVER" "$@" "$URI" >"$TMP/drv.out" 2>"$TMP/drv.err"; then
		sed 's/^/    /' "$TMP/drv.out"
		pass "pgstore: $name"
	else
		tail -n 20 "$TMP/drv.err" | sed 's/^/    /'
		fail "pgstore: $name"
	fi
}
drv "every parameter and result type, blobs with NULs, errors by SQLSTATE" types
drv "transactions: commit, rollback, a failed one's commit" tx
drv "begin serialises writers; lock waits and slow statements end at the timeout" lock
drv "a commit wakes the other connection (changed, notify_fd), not its own" notify
drv "a URI with a password is refused (passfile named, password not echoed)" password
drv "a forked child abandons the connection without ending the parent's session" fork

# The server stopped under an open transaction, then started again.
down_test() {
	local line rc
	coproc DRV { run_prog "$PGDRIVER" down "$URI" 2>"$TMP/down.err"; }
	local drv_in drv_out drv_pid=$DRV_PID
	# Copies: bash closes the coproc's own descriptors when it ends.
	exec {drv_in}>&"${DRV[1]}" {drv_out}<&"${DRV[0]}"
	read -r -t 60 line <&"$drv_out" && [ "$line" = ready ] || {
		echo "    no ready ($line)"
		kill "$drv_pid" 2>/dev/null
		return 1
	}
	pg_stop immediate || return 1
	echo stopped >&"$drv_in"
	read -r -t 60 line <&"$drv_out" && [ "$line" = down-checked ] || {
		echo "    down checks did not finish ($line)"
		pg_restart
		kill "$drv_pid" 2>/dev/null
		return 1
	}
	pg_restart || return 1
	echo started >&"$drv_in"
	while read -r -t 60 line <&"$drv_out"; do echo "    $line"; done
	wait "$drv_pid"
	rc=$?
	exec {drv_in}>&- {drv_out}<&-
	sed 's/^/    /' "$TMP/down.err"
	return $rc
}
check "pgstore: server killed: DOWN, open transaction not acknowledged, reconnects after restart" \
	down_test

# Writers that print each acknowledged commit; the count printed must be in the database.
writer_wrap=()
if [ "$MODE" = valgrind ]; then
	writer_wrap=(valgrind -q --error-exitcode=99 --leak-check=no
		--suppressions="$SRCDIR/tests/valgrind.supp")
fi
acked() {
	grep -c '^[0-9][0-9]*$' "$1"
}

# (a) the server killed mid-write (pg_ctl stop -m immediate), twice.
durable_server_kill() {
	local round n total=0
	for round in 1 2; do
		"${writer_wrap[@]}" "$PGDRIVER" writer "$URI" "srv$round" >"$TMP/w$round.out" \
			2>"$TMP/w$round.err" &
		local pid=$!
		# Until some commits are acknowledged (valgrind starts slowly).
		for _ in $(seq 1 100); do
			[ "$(acked "$TMP/w$round.out")" -ge 20 ] && break
			sleep 0.1
		done
		pg_stop immediate
		wait "$pid"
		pg_restart || return 1
		n=$(acked "$TMP/w$round.out")
		[ "$n" -gt 0 ] || {
			echo "    round $round: nothing acknowledged"
			return 1
		}
		run_prog "$PGDRIVER" check "$URI" "srv$round" "$n" | sed 's/^/    /'
		[ "${PIPESTATUS[0]}" -eq 0 ] || return 1
		total=$((total + n))
	done
}
check "pgstore: server killed mid-write: every acknowledged commit is there" durable_server_kill

# (b) writers killed with SIGKILL at random moments.
durable_writer_kill() {
	local round n
	for round in 1 2 3; do
		"${writer_wrap[@]}" "$PGDRIVER" writer "$URI" "kill$round" >"$TMP/k$round.out" \
			2>"$TMP/k$round.err" &
		local pid=$!
		for _ in $(seq 1 100); do
			[ "$(acked "$TMP/k$round.out")" -ge $((10 + RANDOM % 40)) ] && break
			sleep 0.05
		done
		kill -9 "$pid"
		wait "$pid" 2>/dev/null
		n=$(acked "$TMP/k$round.out")
		run_prog "$PGDRIVER" check "$URI" "kill$round" "$n" | sed 's/^/    /'
		[ "${PIPESTATUS[0]}" -eq 0 ] || return 1
	done
}
check "pgstore: writers killed with SIGKILL: every acknowledged commit is there" \
	durable_writer_kill

pg_stop
