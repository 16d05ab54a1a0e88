# The virtual-key store (SQLite) as processes see it, against SoftHSM2:
#  - propagation: a `keys deny` made by the CLI is enforced by a running
#    application (tests/progs/storeprobe.c), checked by polling for up to 2 s,
#    and the measured delay reported;
#  - the audit trail: rows for sync and permission changes, `audit --verify`
#    passes, then fails naming the row once a row is altered or deleted with
#    the sqlite3 CLI (exit 1);
#  - a read-only state directory: an application that may read the store but
#    not write it uses its keys, and creating one fails with a message naming
#    the store (as user nobody when run as root);
#  - `index import` of an old journal: counts, and nothing twice.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).

mk_tmp
chmod 755 "$TMP"
PROBE=$BUILD/tests/storeprobe
softhsm_setup "$TMP/hsm" t1 || { fail "store: softhsm setup"; return; }
if ! command -v pkcs11-tool >/dev/null 2>&1 || ! command -v sqlite3 >/dev/null 2>&1 ||
	! command -v jq >/dev/null 2>&1; then
	skip "store: all" "pkcs11-tool, sqlite3 or jq missing (tests/install-deps.sh installs them)"
	return
fi
mkdir -m 700 "$TMP/state"
proxy_conf "$TMP/state/proxy.yaml" t1
DB=$TMP/state/keys.db
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label t1 --login --pin "$TEST_USER_PIN" \
	--keygen --key-type AES:16 --label k1 --id 01 >/dev/null 2>&1 ||
	{ fail "store: key generation on SoftHSM2"; return; }
if cli sync >"$TMP/sync.out" 2>&1 && [ -f "$DB" ]; then
	pass "store: sync creates $DB"
else
	fail "store: sync creates the store" "$(cat "$TMP/sync.out")"
	return
fi

# ---- propagation to a running process ----
rm -f "$TMP/stamp"
run_prog "$PROBE" "$PROXY_MODULE" v-t1 "$TEST_USER_PIN" k1 watch "$TMP/stamp" \
	>"$TMP/probe.out" 2>"$TMP/probe.err" &
probe=$!
for _ in $(seq 1 300); do
	grep -q ready "$TMP/probe.out" 2>/dev/null && break
	sleep 0.1
done
if grep -q ready "$TMP/probe.out"; then
	cli keys deny k1 encrypt >"$TMP/deny.out" 2>&1
	rc=$?
	date +%s%N >"$TMP/stamp.tmp" && mv "$TMP/stamp.tmp" "$TMP/stamp"
	wait $probe
	prc=$?
	if [ $rc -eq 0 ] && [ $prc -eq 0 ]; then
		sed 's/^/    /' "$TMP/probe.out"
		pass "store: a keys deny reaches a running application ($(tail -n 1 "$TMP/probe.out"))"
	else
		cat "$TMP/deny.out" "$TMP/probe.out" "$TMP/probe.err" | sed 's/^/    /'
		fail "store: a keys deny reaches a running application" "cli $rc, probe $prc"
	fi
else
	kill $probe 2>/dev/null
	wait $probe 2>/dev/null
	sed 's/^/    /' "$TMP/probe.err"
	fail "store: a keys deny reaches a running application" "the probe did not start"
fi

# ---- read-only state directory ----
# The administrator owns the state; the application may read it only.
chmod 755 "$TMP/state"
chmod 644 "$DB" "$DB-wal" "$DB-shm" "$TMP/state/proxy.yaml" 2>/dev/null
cli keys allow k1 encrypt >/dev/null 2>&1
if [ "$(id -u)" -eq 0 ]; then
	chown -R nobody "$TMP/hsm"
	as_app=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
else
	chmod 555 "$TMP/state"
	as_app=()
fi
P11PROXY_CONF=$TMP/state/proxy.yaml "${as_app[@]}" env SOFTHSM2_CONF="$SOFTHSM2_CONF" \
	"$PROBE" "$PROXY_MODULE" v-t1 "$TEST_USER_PIN" k1 use >"$TMP/ro.out" 2>"$TMP/ro.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "use ok" "$TMP/ro.out" && grep -q "create refused" "$TMP/ro.out" &&
	grep -q "read-only" "$TMP/ro.err" && grep -q "$DB" "$TMP/ro.err"; then
	sed 's/^/    /' "$TMP/ro.out" "$TMP/ro.err"
	pass "store: read-only state directory: keys used, creation refused naming the store"
else
	cat "$TMP/ro.out" "$TMP/ro.err" | sed 's/^/    /'
	fail "store: read-only state directory" "exit $rc"
fi
[ "$(id -u)" -eq 0 ] && chown -R root "$TMP/hsm"
chmod 700 "$TMP/state"

# ---- audit ----
cli audit --json >"$TMP/audit.json" 2>&1
if jq -e '[.rows[].what] | index("sync") != null and index("perms") != null' \
	"$TMP/audit.json" >/dev/null 2>&1 &&
	jq -e '.rows[] | select(.what == "perms") | .label == "k1" and .slot == "v-t1"' \
		"$TMP/audit.json" >/dev/null 2>&1; then
	pass "store: audit lists sync and perms rows ($(jq '.rows | length' "$TMP/audit.json") rows)"
else
	sed 's/^/    /' "$TMP/audit.json"
	fail "store: audit lists sync and perms rows"
fi
cli audit --slot v-t1 --since 2000-01-01 >"$TMP/audit.txt" 2>&1
if grep -q "perms ed" "$TMP/audit.txt" || grep -q "perms .* -> " "$TMP/audit.txt"; then
	pass "store: audit --slot --since (text)"
else
	sed 's/^/    /' "$TMP/audit.txt"
	fail "store: audit --slot --since (text)"
fi
if cli audit --verify >"$TMP/v.out" 2>&1; then
	pass "store: audit --verify: $(cat "$TMP/v.out")"
else
	sed 's/^/    /' "$TMP/v.out"
	fail "store: audit --verify on an intact trail"
fi
sqlite3 "$DB" "UPDATE audit SET to_v = 'edsvwuk' WHERE id = 2"
cli audit --verify >"$TMP/v.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "row 2 was altered" "$TMP/v.out"; then
	pass "store: audit --verify finds a row altered with sqlite3 (row 2)"
else
	sed 's/^/    /' "$TMP/v.out"
	fail "store: audit --verify finds an altered row" "exit $rc"
fi
sqlite3 "$DB" "DELETE FROM audit WHERE id = 1"
cli --json audit --verify >"$TMP/v.json" 2>/dev/null
rc=$?
if [ $rc -eq 1 ] && jq -e '.ok == false and .bad_row == 1' "$TMP/v.json" >/dev/null 2>&1; then
	pass "store: audit --verify --json finds a deleted row (row 1)"
else
	sed 's/^/    /' "$TMP/v.json"
	fail "store: audit --verify finds a deleted row" "exit $rc"
fi

# ---- index import ----
J=$SRCDIR/tests/fuzz/corpus/index/02-journal
cli --json index import "$J" >"$TMP/imp.json" 2>&1
rc=$?
n=$(jq -r '.records' "$TMP/imp.json" 2>/dev/null)
if [ $rc -eq 0 ] && [ -n "$n" ] && [ "$n" -gt 0 ] &&
	jq -e ".imported == $n and .skipped == 0" "$TMP/imp.json" >/dev/null 2>&1 &&
	[ "$(sqlite3 "$DB" "SELECT count(*) FROM vkeys WHERE live = 1 AND slot <> 'v-t1'")" = "$n" ] &&
	[ "$(sqlite3 "$DB" "SELECT count(*) FROM vkeys WHERE vid = 16 AND label = CAST('aes key' AS BLOB)")" = 1 ]; then
	pass "store: index import ($n records)"
else
	sed 's/^/    /' "$TMP/imp.json"
	fail "store: index import" "exit $rc"
fi
cli index import "$J" >"$TMP/imp2.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "0 imported, $n skipped" "$TMP/imp2.out"; then
	pass "store: index import again: $(cat "$TMP/imp2.out")"
else
	sed 's/^/    /' "$TMP/imp2.out"
	fail "store: index import is idempotent" "exit $rc"
fi
printf 'not a journal\n' >"$TMP/bad.index"
cli index import "$TMP/bad.index" >"$TMP/imp3.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "bad.index:1: byte 0: bad magic" "$TMP/imp3.out"; then
	pass "store: index import refuses a damaged journal naming the line"
else
	sed 's/^/    /' "$TMP/imp3.out"
	fail "store: index import refuses a damaged journal" "exit $rc"
fi
