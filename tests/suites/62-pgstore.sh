# The PostgreSQL driver (lib/index/pg.c) against a private server (tests/pg.sh):
#  - parameters and results of every type, blobs with NULs, errors by SQLSTATE;
#  - transactions: commit, rollback, a failed transaction's commit;
#  - two connections serialised by begin; lock waits and slow statements bounded;
#  - a commit seen by another connection's changed() and notify_fd;
#  - a URI with a password refused; a forked child's abandon leaves the parent's connection;
#  - the server stopped (pg_ctl stop -m immediate): DOWN, an open transaction not
#    acknowledged, then a reconnection by itself after the restart, reported as a change;
#  - no acknowledged commit lost when the server is killed mid-write, or the writer is;
#  - the bulk read the store loads with (COPY binary): checked, records equal, damaged rows refused;
#  - `p11proxy store init`: roles and grants, the application role's writes to permissions,
#    state, overlays, the audit trail refused by the database (SQLSTATE 42501).
# The server runs natively in every mode; under valgrind only our programs run under it.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).

# shellcheck source=tests/pg.sh
. "$SRCDIR/tests/pg.sh"
PGDRIVER=$BUILD/tests/pgdriver
# Rounds of the durability checks (valgrind: fewer, each writer starts slowly).
case $MODE in
valgrind) srv_rounds="1" kill_rounds="1 2" ;;
*) srv_rounds="1 2" kill_rounds="1 2 3" ;;
esac

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
# The store's replication debts, in a database of their own (store init below wants its own).
if pg_psql "CREATE DATABASE p11p_debts" >/dev/null; then
	if run_prog_timeout 120 "$PGDRIVER" debts "$(pg_uri "" p11p_debts)" >"$TMP/drv.out" \
		2>"$TMP/drv.err"; then
		pass "pgstore: debts: a version 1 store upgraded in place; attribute templates stored, merged, checked"
	else
		tail -n 20 "$TMP/drv.err" | sed 's/^/    /'
		fail "pgstore: debts: a version 1 store upgraded in place; attribute templates"
	fi
else
	fail "pgstore: debts" "CREATE DATABASE failed"
fi

# The bulk read (COPY ... TO STDOUT (FORMAT binary)) and the store's load through it, in a
# database of its own; damaged rows (a NULL, a label too long, a value out of range, an int4 column) refused.
if pg_psql "CREATE DATABASE p11p_load" >/dev/null; then
	if run_prog_timeout 120 "$PGDRIVER" load "$(pg_uri "" p11p_load)" >"$TMP/drv.out" \
		2>"$TMP/drv.err"; then
		pass "pgstore: load: the binary COPY read checked (field counts, BIGINT lengths, NULLs); records loaded equal; damaged rows refused"
	else
		tail -n 20 "$TMP/drv.err" | sed 's/^/    /'
		fail "pgstore: load: the binary COPY read and the store's load"
	fi
else
	fail "pgstore: load" "CREATE DATABASE failed"
fi

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
	for round in $srv_rounds; do
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
	for round in $kill_rounds; do
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

# store init: the schema, an administrator role and an application role; what the application
# role may not do is refused by the database itself (SQLSTATE 42501: P11P_SQL_DENIED).
roles_test() {
	local out=$TMP/init.out ok=0 app_pw admin_pw a m
	if ! run_prog "$CLI" store init "$URI" --admin-password-file "$TMP/admin.pw" \
		--app-password-file "$TMP/app.pw" >"$out" 2>&1; then
		sed 's/^/    /' "$out"
		return 1
	fi
	sed 's/^/    /' "$out"
	for f in admin app; do
		[ "$(stat -c %a "$TMP/$f.pw")" = 600 ] || {
			echo "    $f.pw is not 0600"
			return 1
		}
	done
	app_pw=$(cat "$TMP/app.pw")
	admin_pw=$(cat "$TMP/admin.pw")
	if grep -qF -e "$app_pw" -e "$admin_pw" "$out" "$PG_DIR/server.log"; then
		echo "    a password is in the output or the server's log"
		return 1
	fi
	# Again: passwords read from the files, grants set again.
	run_prog "$CLI" store init "$URI" --admin-password-file "$TMP/admin.pw" \
		--app-password-file "$TMP/app.pw" >"$out" 2>&1 && grep -q "from $TMP/app.pw" "$out" || {
		echo "    second init:"
		sed 's/^/    /' "$out"
		return 1
	}
	[ "$(cat "$TMP/app.pw")" = "$app_pw" ] || return 1
	pg_passfile "$TMP/pgpass" p11proxy_admin "$admin_pw" p11proxy_app "$app_pw"
	a=$(pg_uri p11proxy_app)
	m=$(pg_uri p11proxy_admin)
	pg_psql "INSERT INTO meta (name, value) VALUES ('limit', 5)" >/dev/null || return 1
	# expect WHO RC SQL: collected, then run on one connection per role (run_sql).
	local app_sql=() admin_sql=()
	expect() {
		if [ "$1" = "$a" ]; then app_sql+=("$2" "$3"); else admin_sql+=("$2" "$3"); fi
	}
	run_sql() {
		local who=$1
		shift
		PGPASSFILE=$TMP/pgpass run_prog "$PGDRIVER" sql "$who" "$@" >"$TMP/sql.out" 2>&1
		local rc=$?
		sed 's/^/    /' "$TMP/sql.out"
		[ $rc -eq 0 ] || ok=1
	}
	expect "$a" OK "SELECT count(*) FROM vkeys, blobs, debts, overlays, audit, meta, migrations"
	expect "$a" OK "INSERT INTO vkeys VALUES (1, 1, 1, 1, 's', 3, 31, '\\x01', '\\x6b', 255, 1, 0, 1, 0, 0, 0, 0)"
	expect "$a" OK "INSERT INTO blobs VALUES (1, 1, '\\x00ff')"
	expect "$a" OK "INSERT INTO audit VALUES (1, 0, 'h', 0, 'p', 's', 1, '\\x6b', 'create', '', 'x', 'h')"
	expect "$a" OK "UPDATE vkeys SET presence = 3, seq = 2, rev = 2, updated = 1"
	# The store writes a record whole: allowed while permissions, state and identity stay.
	local upsert=" ON CONFLICT (vid) DO UPDATE SET seq = excluded.seq, rev = excluded.rev, presence = excluded.presence, perms = excluded.perms, state = excluded.state, updated = excluded.updated"
	expect "$a" OK "INSERT INTO vkeys VALUES (1, 3, 1, 3, 's', 3, 31, '\\x01', '\\x6b', 255, 1, 0, 7, 0, 5, 0, 0)$upsert"
	expect "$a" DENIED "INSERT INTO vkeys VALUES (1, 4, 1, 4, 's', 3, 31, '\\x01', '\\x6b', 0, 1, 0, 7, 0, 6, 0, 0)$upsert"
	expect "$a" DENIED "INSERT INTO vkeys VALUES (1, 4, 1, 4, 's', 3, 31, '\\x01', '\\x6b', 255, 2, 0, 7, 0, 6, 0, 0)$upsert"
	expect "$a" OK "UPDATE meta SET value = value + 1 WHERE name = 'seq'"
	expect "$a" OK "INSERT INTO debts VALUES (1, 's', 'm', 1, 3, '\\x01', '\\x6b', 0, 0)"
	expect "$a" OK "DELETE FROM debts"
	expect "$a" DENIED "UPDATE vkeys SET perms = 0"
	expect "$a" DENIED "UPDATE vkeys SET state = 2"
	expect "$a" DENIED "UPDATE vkeys SET live = 0"
	expect "$a" DENIED "DELETE FROM vkeys"
	expect "$a" DENIED "UPDATE blobs SET data = '\\x00'"
	expect "$a" DENIED "INSERT INTO overlays VALUES ('s', 'order', 'x', 1, 1)"
	expect "$a" DENIED "INSERT INTO overlays VALUES ('s', 'policy', 'x', 1, 1)"
	expect "$a" DENIED "UPDATE overlays SET text = 'x'"
	expect "$a" DENIED "DELETE FROM audit"
	expect "$a" DENIED "UPDATE audit SET hash = 'x'"
	expect "$a" DENIED "INSERT INTO meta VALUES ('x', 1)"
	expect "$a" DENIED "UPDATE meta SET name = 'x'"
	expect "$a" DENIED "DELETE FROM migrations"
	expect "$a" DENIED "CREATE TABLE evil (x int)"
	expect "$a" DENIED "SET ROLE p11proxy_admin"
	# Row-level security: the counters only; another meta row is not the application's.
	expect "$a" OK "UPDATE meta SET value = 0 WHERE name = 'limit'"
	run_sql "$a" "${app_sql[@]}"
	[ "$(pg_psql "SELECT value FROM meta WHERE name = 'limit'")" = 5 ] || {
		echo "    the application role changed meta.limit"
		ok=1
	}
	expect "$m" OK "UPDATE vkeys SET perms = 0, state = 2"
	expect "$m" OK "UPDATE overlays SET text = 'x'"
	run_sql "$m" "${admin_sql[@]}"
	# A wrong password is refused at connect.
	pg_passfile "$TMP/wrong" p11proxy_app "not-the-password"
	PGPASSFILE=$TMP/wrong run_prog "$PGDRIVER" sql "$a" DENIED "SELECT 1" >"$TMP/sql.out" 2>&1 ||
		ok=1
	sed 's/^/    /' "$TMP/sql.out"
	return $ok
}
check "pgstore: store init: roles, schema, grants; the application role refused by the database" \
	roles_test

pg_stop
