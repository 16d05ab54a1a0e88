# A fleet on one PostgreSQL store (tests/pg.sh), through the module and the CLI:
#  - two "hosts" (processes with their own state directories and configurations) share the
#    store as the application role; the CLI runs as the administrator role;
#  - a key created through the module on host A is enforced on host B; a `keys deny` through
#    the CLI is enforced by host B's running process within 1 s (the delay is printed);
#  - the application role cannot change permissions: the CLI run as that role fails with a
#    message naming the store and the database's refusal;
#  - store down: host B's process keeps using the key; creating a key fails naming the store;
#    after the restart a change is enforced again (the module reconnected by itself);
#  - the store's writers: concurrent, killed with SIGKILL, the server stopped under them.
# Under valgrind the module's processes and the CLI run under it, except the CLI's timed
# `keys deny` (the delay is counted from its start) and the server.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).

# shellcheck source=tests/pg.sh
. "$SRCDIR/tests/pg.sh"
FLEET=$BUILD/tests/pgfleet

mk_tmp
if [ ! -x "$FLEET" ]; then
	fail "pgfleet: programs" "no $FLEET (run make tests)"
	return 0 2>/dev/null || exit 0
fi
softhsm_setup "$TMP" fleet || {
	fail "pgfleet: softhsm setup"
	return 0 2>/dev/null || exit 0
}
if ! pg_start "$TMP/pg"; then
	fail "pgfleet: private PostgreSQL server" "$PG_WHY"
	return 0 2>/dev/null || exit 0
fi
export PGFLEET_PIN=$TEST_USER_PIN
if ! "$CLI" store init "$(pg_uri)" --admin-password-file "$TMP/admin.pw" \
	--app-password-file "$TMP/app.pw" >"$TMP/init.out" 2>&1; then
	fail "pgfleet: store init" "$(tr '\n' '|' <"$TMP/init.out")"
	return 0 2>/dev/null || exit 0
fi
pg_passfile "$TMP/app.pgpass" p11proxy_app "$(cat "$TMP/app.pw")"
pg_passfile "$TMP/admin.pgpass" p11proxy_admin "$(cat "$TMP/admin.pw")"

# host DIR ROLE: a host's configuration (its own state directory) on the shared store.
host() {
	mkdir -p "$1/state"
	chmod 700 "$1" "$1/state"
	{
		printf 'state_dir: %s\n' "$1/state"
		printf 'index: %s\n' "$(pg_uri "$2")"
		printf 'backends:\n  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
		printf 'slots:\n  - label: vf\n    members:\n'
		printf '      - backend: softhsm\n        token_label: fleet\n'
	} >"$1/proxy.yaml"
}
host "$TMP/a" p11proxy_app
host "$TMP/b" p11proxy_app
host "$TMP/admin" p11proxy_admin

# on HOST CMD...: runs CMD as that host (its configuration and password file).
on() {
	local h=$1
	shift
	local pass=$TMP/app.pgpass
	[ "$h" = admin ] && pass=$TMP/admin.pgpass
	P11PROXY_CONF=$TMP/$h/proxy.yaml PGPASSFILE=$pass "$@"
}
fleet() {
	run_prog "$FLEET" "$@"
}

# A key created through the module on host A, as the application role.
if on a fleet mkaes "$PROXY_MODULE" vf fk1 >"$TMP/mk.out" 2>&1 && grep -q created "$TMP/mk.out"; then
	pass "pgfleet: a key created through the module on host A (application role)"
else
	fail "pgfleet: a key created through the module on host A" "$(tr '\n' '|' <"$TMP/mk.out")"
fi
if on admin run_prog "$CLI" keys list --all >"$TMP/list.out" 2>&1 && grep -q fk1 "$TMP/list.out"; then
	pass "pgfleet: the CLI (administrator role) lists it from the store"
else
	fail "pgfleet: the CLI lists the key" "$(head -c 400 "$TMP/list.out" | tr '\n' '|')"
fi

# wait_line FILE PATTERN SECONDS: until a line matching PATTERN is in FILE.
wait_line() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# wait_count FILE PATTERN N SECONDS: until more than N lines match PATTERN in FILE.
wait_count() {
	local i
	for ((i = 0; i < $4 * 20; i++)); do
		[ "$(grep -c "$2" "$1" 2>/dev/null)" -gt "$3" ] && return 0
		sleep 0.05
	done
	return 1
}

# Host B watches the key while the CLI denies encrypt: enforced within 1 s.
WATCH=$TMP/watch.out
on b fleet watch "$PROXY_MODULE" vf fk1 40 >"$WATCH" 2>"$TMP/watch.err" &
watch_pid=$!
if ! wait_line "$WATCH" '^ready' 30; then
	fail "pgfleet: host B uses the key" "$(tr '\n' '|' <"$WATCH") $(tail -n 5 "$TMP/watch.err" | tr '\n' '|')"
else
	pass "pgfleet: host B uses the key created on host A"
	t0=$(date +%s%N)
	if on admin "$CLI" keys deny fk1 encrypt >"$TMP/deny.out" 2>&1 &&
		wait_line "$WATCH" '^refused' 5; then
		t1=$(grep -m1 '^refused' "$WATCH" | awk '{print $2}')
		ms=$(((t1 - t0) / 1000000))
		echo "    keys deny on the CLI host enforced by host B after $ms ms"
		if [ "$ms" -lt 1000 ]; then
			pass "pgfleet: a keys deny is enforced on the other host within 1 s ($ms ms)"
		else
			fail "pgfleet: a keys deny is enforced on the other host within 1 s" "$ms ms"
		fi
	else
		fail "pgfleet: a keys deny is enforced on the other host" \
			"$(tr '\n' '|' <"$TMP/deny.out") $(tr '\n' '|' <"$WATCH")"
	fi
	on admin "$CLI" keys allow fk1 encrypt >/dev/null 2>&1
	if wait_line "$WATCH" '^allowed' 5; then
		pass "pgfleet: keys allow is enforced again on host B"
	else
		fail "pgfleet: keys allow is enforced again on host B" "$(tr '\n' '|' <"$WATCH")"
	fi

	# Store down: host B keeps using the key; a process of host A started before cannot
	# create a key, and says which store failed.
	coproc MK { on a env PGFLEET_WAIT=1 "$FLEET" mkaes "$PROXY_MODULE" vf fk2 2>&1; }
	exec {mk_in}>&"${MK[1]}" {mk_out}<&"${MK[0]}"
	mk_pid=$MK_PID
	read -r -t 30 line <&"$mk_out"
	pg_stop immediate
	n_before=$(grep -c '^refused' "$WATCH")
	sleep 1.5
	echo go >&"$mk_in"
	cat <&"$mk_out" >"$TMP/mk2.out"
	wait "$mk_pid"
	rc=$?
	exec {mk_in}>&- {mk_out}<&-
	n_after=$(grep -c '^refused' "$WATCH")
	if [ "$n_after" -eq "$n_before" ]; then
		pass "pgfleet: store down: host B keeps using the key under its last permissions"
	else
		fail "pgfleet: store down: host B keeps using the key" "$(tr '\n' '|' <"$WATCH")"
	fi
	if [ "$line" = ready ] && [ $rc -ne 0 ] && grep -q '^refused' "$TMP/mk2.out" &&
		grep -q 'postgresql' "$TMP/mk2.out"; then
		sed 's/^/    /' "$TMP/mk2.out" | head -n 4
		pass "pgfleet: store down: creating a key fails, naming the store"
	else
		fail "pgfleet: store down: creating a key fails, naming the store" \
			"exit $rc: $(tr '\n' '|' <"$TMP/mk2.out")"
	fi
	pg_restart
	# Back: a change made now reaches host B's process (reconnected, caught up).
	sleep 1.2
	n_before=$(grep -c '^refused' "$WATCH")
	t0=$(date +%s%N)
	if on admin "$CLI" keys deny fk1 encrypt >"$TMP/deny.out" 2>&1 &&
		wait_count "$WATCH" '^refused' "$n_before" 10; then
		t1=$(grep '^refused' "$WATCH" | tail -n 1 | awk '{print $2}')
		echo "    after the restart: enforced on host B after $(((t1 - t0) / 1000000)) ms"
		pass "pgfleet: store back: host B reconnected by itself and enforces changes"
	else
		fail "pgfleet: store back: host B enforces changes" \
			"$(tr '\n' '|' <"$TMP/deny.out") $(tr '\n' '|' <"$WATCH")"
	fi
fi
kill "$watch_pid" 2>/dev/null
wait "$watch_pid" 2>/dev/null

# The application role may not change permissions: the database refuses, the CLI says so.
if on a run_prog "$CLI" keys allow fk1 encrypt >"$TMP/app.out" 2>&1; then
	fail "pgfleet: the application role cannot change permissions" "keys allow succeeded"
elif grep -q 'postgresql' "$TMP/app.out" && grep -q '42501' "$TMP/app.out"; then
	sed 's/^/    /' "$TMP/app.out" | head -n 3
	pass "pgfleet: the application role cannot change permissions (refused by the database)"
else
	fail "pgfleet: the application role's refusal names the store and 42501" \
		"$(tr '\n' '|' <"$TMP/app.out")"
fi

# Overlays (issue 11): the application role may not write them (the database refuses, the CLI
# says so and nothing changes); the administrator's `policy set` is in the store, audited, and
# read by another host as the application role.
if on a run_prog "$CLI" policy set vf scan=owned >"$TMP/app.out" 2>&1; then
	fail "pgfleet: the application role cannot change the policy" "policy set succeeded"
elif grep -q 'postgresql' "$TMP/app.out" && grep -q '42501' "$TMP/app.out"; then
	sed 's/^/    /' "$TMP/app.out" | head -n 3
	pass "pgfleet: the application role cannot change the policy (refused by the database)"
else
	fail "pgfleet: the application role's policy refusal names the store and 42501" \
		"$(tr '\n' '|' <"$TMP/app.out")"
fi
if on a run_prog "$CLI" members vf top 1 >"$TMP/app.out" 2>&1; then
	fail "pgfleet: the application role cannot change the member order" "members top succeeded"
elif grep -q '42501' "$TMP/app.out"; then
	pass "pgfleet: the application role cannot change the member order (refused by the database)"
else
	fail "pgfleet: the application role's member-order refusal names 42501" \
		"$(tr '\n' '|' <"$TMP/app.out")"
fi
if on b run_prog "$CLI" policy show vf >"$TMP/pol.out" 2>&1 && grep -q 'scan all (from the configuration)' "$TMP/pol.out" &&
	on admin run_prog "$CLI" policy set vf scan=owned >"$TMP/pol.out" 2>&1 &&
	on b run_prog "$CLI" policy show vf --json >"$TMP/pol.json" 2>&1 &&
	jq -e '.slots[0].scan == "owned" and .slots[0].source == "overlay"' "$TMP/pol.json" >/dev/null &&
	on admin run_prog "$CLI" audit --json --slot vf >"$TMP/aud.json" 2>&1 &&
	jq -e '[.rows[] | select(.what == "policy")] | length == 1' "$TMP/aud.json" >/dev/null &&
	on admin run_prog "$CLI" audit --verify >"$TMP/ver.out" 2>&1 &&
	on admin run_prog "$CLI" policy reset vf >"$TMP/pol.out" 2>&1; then
	pass "pgfleet: the administrator's policy set is in the store, audited, seen by host B"
else
	fail "pgfleet: the administrator's policy set is in the store, audited, seen by host B" \
		"$(cat "$TMP/pol.out" "$TMP/pol.json" "$TMP/aud.json" "$TMP/ver.out" 2>/dev/null | tr '\n' '|')"
fi

# The store itself (tests/progs/indexkill.c, as in 55-index, here on PostgreSQL): two writers
# at once lose nothing; a writer killed with SIGKILL, and the server stopped with
# `pg_ctl stop -m immediate` under a writer, lose no acknowledged transaction.
KILL=$BUILD/tests/indexkill
kill_wrap=()
[ "$MODE" = valgrind ] && kill_wrap=(valgrind -q --error-exitcode=99 --leak-check=no
	--suppressions="$SRCDIR/tests/valgrind.supp")
store_writers() {
	local u n
	u=$(pg_uri p11proxy_admin)
	run_prog "$KILL" writer "$u" A 40 3 >"$TMP/ka.out" 2>"$TMP/ka.err" &
	local pid=$!
	run_prog "$KILL" writer "$u" B 40 3 >"$TMP/kb.out" 2>"$TMP/kb.err" || return 1
	wait "$pid" || return 1
	run_prog "$KILL" check "$u" A 40 | sed 's/^/    /'
	[ "${PIPESTATUS[0]}" -eq 0 ] || return 1
	run_prog "$KILL" check "$u" B 40 | sed 's/^/    /'
	[ "${PIPESTATUS[0]}" -eq 0 ]
}
# store_killed PREFIX HOW: a writer until HOW (writer: kill -9; server: pg_ctl stop -m immediate).
store_killed() {
	local u n pid
	u=$(pg_uri p11proxy_admin)
	"${kill_wrap[@]}" "$KILL" writer "$u" "$1" 0 3 >"$TMP/k$1.out" 2>"$TMP/k$1.err" &
	pid=$!
	for _ in $(seq 1 200); do
		[ "$(grep -c '^[0-9]' "$TMP/k$1.out")" -ge 10 ] && break
		sleep 0.05
	done
	if [ "$2" = server ]; then
		pg_stop immediate
		wait "$pid"
		pg_restart || return 1
	else
		kill -9 "$pid"
		wait "$pid" 2>/dev/null
	fi
	n=$(grep -c '^[0-9]' "$TMP/k$1.out")
	[ "$n" -gt 0 ] || return 1
	run_prog "$KILL" check "$u" "$1" "$n" | sed 's/^/    /'
	[ "${PIPESTATUS[0]}" -eq 0 ]
}
if [ -x "$KILL" ]; then
	export PGPASSFILE=$TMP/admin.pgpass
	check "pgfleet: store: two writers at once, nothing lost" store_writers
	check "pgfleet: store: a writer killed with SIGKILL loses no acknowledged change" \
		store_killed K writer
	check "pgfleet: store: the server stopped mid-write loses no acknowledged change" \
		store_killed S server
	unset PGPASSFILE
else
	fail "pgfleet: store durability" "no $KILL (run make tests)"
fi

pg_stop
