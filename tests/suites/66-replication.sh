# Key replication through the fault-injecting shim (tests/progs/repltest.c): new token keys
# copied to the other member under the replication key, refused when they cannot be copied,
# allowed on one member with single_member_keys, caught up when a member returns; and
# `p11proxy sync --check` comparing the members.
mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "repl: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
member() {
	printf '      - backend: shim\n        token_label: %s\n' "$1"
}
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: ha\n    ha: { replication_key: repl, probe_interval: 100ms }\n'
	# Destroys reach the HSM keys (with virtual keys on, the default would keep them).
	printf '    policy: { write_back: true }\n'
	printf '    members:\n'
	member m1
	member m2
	printf '  - label: single\n'
	printf '    ha: { replication_key: repl, single_member_keys: true, probe_interval: 100ms }\n'
	printf '    policy: { write_back: true }\n    members:\n'
	member m1
	member m2
	printf '  - label: none\n    ha: { replication: none, replication_key: repl }\n'
	printf '    policy: { write_back: true }\n    members:\n'
	member m1
	member m2
	printf '  - label: vend\n    ha: { replication: vendor, replication_wait: 300ms }\n'
	printf '    policy: { write_back: true }\n    members:\n'
	member m1
	member m2
	printf '  - label: nokey\n    policy: { write_back: true }\n    members:\n'
	member m1
	member m2
	# The default key policy (write_back false), as a new user has it (issue 10).
	printf '  - label: dflt\n    ha: { replication_key: repl }\n    members:\n'
	member m1
	member m2
	printf '  - label: v-m1\n    policy: { write_back: true }\n    members:\n'
	member m1
	printf '  - label: v-m2\n    policy: { write_back: true }\n    members:\n'
	member m2
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml

quick=
[ "$MODE" = valgrind ] && quick=quick
repl() {
	# shellcheck disable=SC2086
	run_prog "$BUILD/tests/repltest" "$PROXY_MODULE" "$P11SHIM_CONTROL" "$P11SHIM_LOG" "$1" \
		$quick >"$TMP/$1.out" 2>&1
	local rc=$?
	[ $rc -eq 0 ] || ! lsan_tracer_crash_only "$TMP/$1.out" "$TMP/$1.out" || rc=0
	[ $rc -eq 0 ] || sed 's/^/    /' "$TMP/$1.out"
	return $rc
}
# sync_check WANT_RC [ARGS...]: `p11proxy sync --check` with the PIN on stdin.
sync_check() {
	local want=$1 rc=0
	shift
	printf '%s\n' "$TEST_USER_PIN" | run_prog "$CLI" sync --check "$@" >"$TMP/sync.out" \
		2>"$TMP/sync.err" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "    exit $rc, wanted $want"
		sed 's/^/    /' "$TMP/sync.out" "$TMP/sync.err"
		return 1
	fi
}
json_ok() {
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if ('"$2"') else 1)' "$1"
}

# The replication key, made by the CLI (SoftHSM2 wants the SO for CKA_TRUSTED); 69-replkey
# tests the command itself.
export P11P_SO_PIN=$TEST_SO_PIN
if printf '%s\n' "$TEST_USER_PIN" | run_prog "$CLI" replication-key create ha \
	--so-pin-source env:P11P_SO_PIN >"$TMP/rk.out" 2>&1; then
	pass "repl: replication key on both tokens (replication-key create)"
else
	fail "repl: replication key on both tokens (replication-key create)" "$(cat "$TMP/rk.out")"
fi
check "repl: AES, EC and RSA keys copied; used on m2 after m1 fails" repl copy
check "repl: destroying a key destroys its copies" repl destroy
check "repl: default policy: the application names the keys it made (CKA_ID, CKA_LABEL)" \
	repl naming
check "repl: a session key copied to the token: replicated, locked on both members" \
	repl sesscopy
check "repl: a find for CKA_EXTRACTABLE agrees with what a session key made copyable shows" \
	repl sessfind

check "repl: sync --check: members agree (exit 0)" sync_check 0 ha
if sync_check 0 ha --json && json_ok "$TMP/sync.out" 'd["ok"] is True and
		d["slots"][0]["label"] == "ha" and len(d["slots"][0]["members"]) == 2 and
		all(k["missing"] == [] for k in d["slots"][0]["keys"]) and
		any(k["label"] == "r-aes" and k["class"] == "secret" for k in d["slots"][0]["keys"])'; then
	pass "repl: sync --check --json"
else
	fail "repl: sync --check --json" "$(cat "$TMP/sync.out")"
fi
check "repl: non-extractable keys copied, then locked; a refused copy leaves nothing" repl refuse
check "repl: single_member_keys allows them" repl single
if sync_check 1 ha && grep -q 'r-single' "$TMP/sync.out"; then
	pass "repl: sync --check reports the missing key (exit 1)"
else
	fail "repl: sync --check reports the missing key (exit 1)"
fi
if sync_check 1 --json && json_ok "$TMP/sync.out" 'd["ok"] is False and
		[k["missing"] for s in d["slots"] if s["label"] == "ha" for k in s["keys"]
		 if k["label"] == "r-single"] == [[2]]'; then
	pass "repl: sync --check --json names the member missing it"
else
	fail "repl: sync --check --json names the member missing it" "$(cat "$TMP/sync.out")"
fi
check "repl: remove the single-member key" repl cleanup
if repl modes && grep -q "did not appear on member 'm2' within 300 ms (ha.replication: vendor" \
	"$TMP/modes.out" &&
	grep -q "no replication key on slot 'nokey'.*run \`p11proxy replication-key create nokey\`" \
		"$TMP/modes.out"; then
	pass "repl: replication none and vendor make no copies; no key: refused, naming the command"
else
	fail "repl: replication none / vendor / no key" "$(cat "$TMP/modes.out")"
fi
check "repl: sync --check: agreement again (exit 0)" sync_check 0
check "repl: catch-up of a member that comes back" repl catchup
check "repl: sync --check after the catch-up (exit 0)" sync_check 0 ha
# sync without --check records keys in the index (57-keys-cli); a dry run writes nothing.
if "$CLI" sync ha --dry-run >"$TMP/nosync.out" 2>&1; then rc=0; else rc=$?; fi
if [ $rc -eq 0 ] && grep -q 'slot ha (dry run, nothing written): added' "$TMP/nosync.out"; then
	pass "repl: sync --dry-run without --check reports the keys to record"
else
	fail "repl: sync --dry-run without --check reports the keys to record" "exit $rc"
fi

# keys rotate on an HA slot: the new key is made on one member and copied to the other
# under the replication key (the CLI needs the members' PINs in its configuration).
export P11P_REPL_PIN=$TEST_USER_PIN
sed 's/^\(        token_label: m[12]\)$/\1\n        pin: env:P11P_REPL_PIN/' "$TMP/proxy.yaml" >"$TMP/cli.yaml"
old=$("$CLI" --config "$TMP/cli.yaml" keys show r-aes --slot ha --json 2>/dev/null | jq -r .vid)
if run_prog "$CLI" --config "$TMP/cli.yaml" keys rotate "$old" >"$TMP/rot.out" 2>&1; then
	new=$("$CLI" --config "$TMP/cli.yaml" keys show "$old" --json | jq -r .next)
	if "$CLI" --config "$TMP/cli.yaml" keys show "$new" --json |
		jq -e '.presence == [1, 2] and .origin == "created" and .label == "r-aes"' >/dev/null; then
		pass "repl: keys rotate on an HA slot: the new key on both members"
	else
		fail "repl: keys rotate on an HA slot: the new key on both members" \
			"$(cat "$TMP/rot.out"; "$CLI" --config "$TMP/cli.yaml" keys show "$new" --json)"
	fi
else
	fail "repl: keys rotate on an HA slot" "$(cat "$TMP/rot.out")"
fi
check "repl: sync --check after the rotation: members agree (exit 0)" sync_check 0 ha

# Attribute changes a member misses (P11P_DEBT_ATTRS): settled by the module when m2 is back.
check "repl: renames, a date and a usage change made while m2 is down reach m2" repl rename
# The usage flags as each token holds them (through the proxy they are the virtual key's).
usage_on() { # usage_on TOKEN KIND LABEL: the "Usage:" line of that object, straight from SoftHSM2
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$TEST_USER_PIN" -O \
		2>/dev/null | awk -v kind="$2" -v label="$3" '
		/Object;/ { cur = index($0, kind " Object") == 1; hit = 0 }
		cur && $1 == "label:" { l = $0; sub(/^[ \t]*label:[ \t]*/, "", l); hit = l == label }
		hit && $1 == "Usage:" { print; exit }'
}
if command -v pkcs11-tool >/dev/null 2>&1; then
	u1=$(usage_on m1 "Secret Key" r-ren3)
	u2=$(usage_on m2 "Secret Key" r-ren3)
	p1=$(usage_on m1 "Public Key" r-pub)
	p2=$(usage_on m2 "Public Key" r-pub)
	# CKA_DECRYPT false on the secret key, CKA_VERIFY false on the public key.
	if [ -n "$u1" ] && [ -n "$u2" ] && [ -n "$p1" ] && [ -n "$p2" ] &&
		! printf '%s\n' "$u1" "$u2" | grep -q decrypt &&
		! printf '%s\n' "$p1" "$p2" | grep -q verify; then
		pass "repl: the usage changes on both tokens (m2:$u2;$p2)"
	else
		fail "repl: the usage changes on both tokens" "m1 [$u1] [$p1] m2 [$u2] [$p2]"
	fi
else
	skip "repl: the usage changes on both tokens" "no pkcs11-tool (tests/install-deps.sh)"
fi
check "repl: the renamed key and the EC pair destroyed" repl renclean
check "repl: a member back with a rename owed, then the other fails: the same handle" \
	repl renfail
# ... and by `sync --repair` when no process is there to see m2 come back.
# sync_repair WANT_RC: `p11proxy sync --repair ha --json` with the PIN on stdin.
sync_repair() {
	local rc=0
	printf '%s\n' "$TEST_USER_PIN" | run_prog "$CLI" sync --repair ha --json >"$TMP/repair.out" \
		2>"$TMP/repair.err" || rc=$?
	[ "$rc" -eq "$1" ] || {
		echo "    exit $rc, wanted $1"
		sed 's/^/    /' "$TMP/repair.out" "$TMP/repair.err"
		return 1
	}
}
check "repl: two keys renamed while m2 is down, the process gone before m2 is back" \
	repl renrepair
: >"$P11SHIM_CONTROL"
check "repl: one of them destroyed on m2 meanwhile" repl gone-del
if sync_repair 1 && json_ok "$TMP/repair.out" 'd["slots"][0]["debts_settled"] >= 1 and
		d["slots"][0]["debts_left"] == 1 and
		[(x["op"], x["member"], x["label"], x["id"], x["tries"]) for x in d["slots"][0]["debts"]]
		== [("attributes", "m2", "r-gone", "73", 1)]'; then
	pass "repl: sync --repair settles the rename; the one not found stays, reported (--json)"
else
	fail "repl: sync --repair settles the rename; the one not found stays" \
		"$(cat "$TMP/repair.out" "$TMP/repair.err")"
fi
check "repl: after the repair m2 has the new CKA_ID and label only" repl renchk
check "repl: m2 gets the other key under its new identity (made there)" repl gone-make
if sync_repair 0 && json_ok "$TMP/repair.out" 'd["slots"][0]["debts_left"] == 0 and
		d["slots"][0]["debts"] == [] and d["ok"] is True'; then
	pass "repl: sync --repair: a debt whose new identity is there already is settled"
else
	fail "repl: sync --repair: a debt whose new identity is there already is settled" \
		"$(cat "$TMP/repair.out" "$TMP/repair.err")"
fi
check "repl: the renamed keys destroyed" repl rencleanup

# Debts that must settle (issue 10): none is left to be retried for ever.
# settles CASE: the case passes and no debt of its process stayed unsettled.
settles() {
	repl "$1" || return 1
	if grep -q 'not settled yet' "$TMP/$1.out"; then
		sed 's/^/    /' "$TMP/$1.out"
		return 1
	fi
}
check "repl: a change owed to a member without the object is dropped, not retried" \
	settles attrgone
check "repl: a change owed to m2, m2 without the object, the process gone before m2 is back" \
	repl agcli
: >"$P11SHIM_CONTROL"
if sync_repair 1 && json_ok "$TMP/repair.out" 'd["slots"][0]["debts_left"] == 0 and
		d["slots"][0]["debts_settled"] == 1 and d["slots"][0]["debts"] == []'; then
	pass "repl: sync --repair drops that change as the module does (the key itself is reported)"
else
	fail "repl: sync --repair drops that change as the module does" \
		"$(cat "$TMP/repair.out" "$TMP/repair.err")"
fi
check "repl: the key destroyed" repl agcli-clean
check "repl: a rename and a date owed to m2, the process gone before m2 is back" repl raready
: >"$P11SHIM_CONTROL"
check "repl: the same rename made on m2 by a tool" repl raready-m2
if sync_repair 0 && json_ok "$TMP/repair.out" 'd["slots"][0]["debts_left"] == 0'; then
	pass "repl: sync --repair settles the change of an object renamed there already"
else
	fail "repl: sync --repair settles the change of an object renamed there already" \
		"$(cat "$TMP/repair.out" "$TMP/repair.err")"
fi
check "repl: ... and m2 has the rest of the change (the date)" repl raready-chk
check "repl: again, a rename and a date owed to m2, the process gone before m2 is back" \
	repl raready
: >"$P11SHIM_CONTROL"
check "repl: the same rename made on m2 by a tool" repl raready-m2
check "repl: the module settles it itself: m2 has the date too, nothing left unsettled" \
	settles raready-mod
check "repl: a lock owed follows a rename: CKA_EXTRACTABLE false on both members" \
	settles lockren
check "repl: a rename chain A->B->C->A->D while m2 is down ends as D, with the changes between" \
	settles chain
check "repl: a data object renamed while m2 is down: renamed there, re-found by its label" \
	settles dataren
if sync_check 0 ha --json && json_ok "$TMP/sync.out" 'd["slots"][0]["debts"] == 0'; then
	pass "repl: sync --check: no debt left in the store"
else
	fail "repl: sync --check: no debt left in the store" "$(cat "$TMP/sync.out")"
fi
check "repl: sync --check at the end: members agree (exit 0)" sync_check 0 ha
