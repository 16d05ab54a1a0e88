# Member order from the CLI (`p11proxy members`), followed by a running process
# without a restart, and health for operators (`p11proxy health`, --listen).
# HA pair over SoftHSM2 tokens m1, m2 behind the fault-injecting shim, as in 65-ha.sh.
mk_tmp
softhsm_setup "$TMP" m1 m2 || { fail "members: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
member() {
	printf '      - backend: shim\n        token_label: %s\n' "$1"
}
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\n' "$BUILD/tests/libshim.so"
	printf 'slots:\n  - label: ha\n    ha: { mode: failover, probe_interval: 100ms }\n'
	printf '    members:\n'
	member m1
	member m2
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml
# The member order overlay lives in the store (issue 11): <state_dir>/keys.db, no file.
OVERLAY=$TMP/state/slots/ha.members
DB=$TMP/state/keys.db
# ov_text: the slot's member-order overlay as the store holds it ("" when none).
ov_text() {
	sqlite3 "$DB" "SELECT text FROM overlays WHERE slot = 'ha' AND kind = 'member-order'" |
		grep -v '^#'
}
# ov_damage TEXT: writes TEXT as the overlay behind the CLI's back (a new change number, so
# running processes read it), as a damaged or hand-edited store would hold it.
ov_damage() {
	sqlite3 "$DB" "BEGIN IMMEDIATE;
UPDATE meta SET value = value + 1 WHERE name = 'seq';
INSERT INTO overlays (slot, kind, text, version, seq) VALUES ('ha', 'member-order', CAST(X'$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')' AS TEXT), 1, (SELECT value FROM meta WHERE name = 'seq'))
ON CONFLICT (slot, kind) DO UPDATE SET text = excluded.text, version = overlays.version + 1, seq = excluded.seq;
COMMIT;"
}
# The PIN source of the member added below, read by the process that loads the module.
export P11P_TEST_ADDED_PIN=$TEST_USER_PIN


# json FILE JQ-FILTER: FILE is JSON and the filter is true (jq -e).
json() {
	jq -e "$2" "$1" >/dev/null 2>&1
}

# expect_cli NAME WANT_RC GREP-PATTERN CLI-ARGS...: the exit status, and the
# pattern in stdout + stderr.

if ! command -v jq >/dev/null 2>&1 || ! command -v sqlite3 >/dev/null 2>&1; then
	skip "members: all" "jq or sqlite3 missing (tests/install-deps.sh installs it)"
	return
fi

# --- listing ---------------------------------------------------------------------------------

expect_cli "members: list (config order, both healthy)" 0 '^   2  m2 .*healthy' members ha
if cli members ha --json >"$TMP/list.json" 2>"$TMP/err" &&
	json "$TMP/list.json" '.order == "config" and ([.members[].name] == ["m1","m2"]) and
		([.members[].healthy] == [true,true]) and .members[0].selector.type == "token_label" and
		.members[0].priority == 1'; then
	pass "members: --json parses, priority, name, backend, selector, health"
else
	fail "members: --json parses, priority, name, backend, selector, health"
fi
expect_cli "members: unknown slot is a usage error" 2 "no virtual slot 'nope'" members nope
expect_cli "members: unknown action is a usage error" 2 "unknown action" members ha sideways m1
expect_cli "members: unknown member" 1 "no member 'm9'" members ha top m9
expect_cli "members: add needs a selector" 2 "add needs" members ha add --name x --backend shim
expect_cli "members: a PIN on argv is refused" 2 "never accepted on the command line" \
	members ha add --name x --backend shim --token-label m1 --pin 1234

# --- a running process follows the order -----------------------------------------------------

ORD_OUT=$TMP/ordertest.err
coproc ORD { run_prog "$BUILD/tests/ordertest" "$PROXY_MODULE" "$P11SHIM_LOG" 2>"$ORD_OUT"; }
ord_pid=$ORD_PID # bash unsets ORD_PID once the coprocess has exited
# ord COMMAND: sends it to ordertest and sets REPLY to the answer (30 s at most).
ord() {
	REPLY=
	echo "$1" >&"${ORD[1]}" 2>/dev/null || return 1
	read -t 60 -r REPLY <&"${ORD[0]}"
}
settle=1.5
[ "$MODE" = valgrind ] && settle=4
read -t 60 -r REPLY <&"${ORD[0]}"
if [ "$REPLY" != ready ]; then
	fail "members: ordertest starts" "$(cat "$ORD_OUT")"
	return
fi

ord open
[ "$REPLY" = "open 1 m1" ] && pass "order: first session on m1" ||
	fail "order: first session on m1" "$REPLY"

expect_cli "order: members ha top m2" 0 "slot ha: m2, m1" members ha top m2
sleep "$settle"
ord open
[ "$REPLY" = "open 2 m2" ] && pass "order: after 'top m2' a new session goes to m2 (no restart)" ||
	fail "order: after 'top m2' a new session goes to m2 (no restart)" "$REPLY"
if [ "$(ov_text)" = "m2
m1" ] && [ ! -e "$OVERLAY" ]; then
	pass "order: the overlay is in the store (no file)"
else
	fail "order: the overlay is in the store (no file)" "$(ov_text; ls -la "$TMP/state/slots")"
fi
if cli audit --json --slot ha >"$TMP/a.json" 2>&1 &&
	json "$TMP/a.json" '[.rows[] | select(.what == "member-order")] | last | .from == "m1,m2" and .to == "m2,m1" and .vid == "0000000000000000"'; then
	pass "order: the change is an audit row (from, to)"
else
	fail "order: the change is an audit row (from, to)" "$(cat "$TMP/a.json")"
fi

expect_cli "order: members ha down m2" 0 "slot ha: m1, m2" members ha down m2
expect_cli "order: members ha up 2 (by position)" 0 "slot ha: m2, m1" members ha up 2
expect_cli "order: members ha bottom m2" 0 "slot ha: m1, m2" members ha bottom m2
cli members ha top m2 >/dev/null 2>&1

expect_cli "order: members ha delete m1" 0 "slot ha: m2$" members ha delete m1
cli members ha --json >"$TMP/list.json" 2>/dev/null
if json "$TMP/list.json" '.order == "overlay" and ([.members[].name] == ["m2"]) and .deleted == ["m1"]'; then
	pass "order: listing after delete (m1 deleted)"
else
	fail "order: listing after delete (m1 deleted)" "$(cat "$TMP/list.json")"
fi
sleep "$settle"
on_m1=0
for _ in 1 2 3 4; do
	ord open
	case $REPLY in *" m1") on_m1=$((on_m1 + 1)) ;; *" m2") ;; *) on_m1=99 ;; esac
done
[ $on_m1 -eq 0 ] && pass "order: after 'delete m1' no new session goes to m1" ||
	fail "order: after 'delete m1' no new session goes to m1" "$on_m1 on m1 (last: $REPLY)"
ord "use 1"
[ "$REPLY" = "use 1 m1" ] && pass "order: a session of the deleted member keeps working" ||
	fail "order: a session of the deleted member keeps working" "$REPLY"

expect_cli "order: the last member cannot be deleted (exit 1)" 1 "last member" \
	members ha delete m2
[ "$(ov_text)" = m2 ] && pass "order: refused delete left the overlay alone" ||
	fail "order: refused delete left the overlay alone"

expect_cli "order: add a member (PIN source, not the PIN)" 0 "slot ha: m2, m1b" \
	members ha add --name m1b --backend shim --token-label m1 --pin-source env:P11P_TEST_ADDED_PIN
ov_text | grep -q '^m1b backend=shim token_label=m1 pin=env:P11P_TEST_ADDED_PIN$' &&
	pass "order: the added member's spec is in the overlay" ||
	fail "order: the added member's spec is in the overlay" "$(ov_text)"
expect_cli "order: a taken name is refused" 1 "already has a member 'm1b'" \
	members ha add --name m1b --backend shim --token-label m2
expect_cli "order: a config name with another spec is refused" 1 "belongs to a configured member" \
	members ha add --name m1 --backend shim --token-label m2
expect_cli "order: members ha top m1b" 0 "slot ha: m1b, m2" members ha top m1b
ord "wait-member m1 10"
[ "$REPLY" = "wait-member m1 ok" ] && pass "order: the added member serves after its probes" ||
	fail "order: the added member serves after its probes" "$REPLY"
cli members ha --json >"$TMP/list.json" 2>/dev/null
if json "$TMP/list.json" '.members[0].name == "m1b" and .members[0].added == true and
	.members[0].pin == "env:P11P_TEST_ADDED_PIN" and .members[0].healthy == true'; then
	pass "order: listing shows the added member"
else
	fail "order: listing shows the added member" "$(cat "$TMP/list.json")"
fi

# Deleting a configured member and adding it back by the same spec is that member again.
expect_cli "order: delete m1b" 0 "slot ha: m2$" members ha delete m1b
expect_cli "order: add m1 back by its config spec" 0 "slot ha: m2, m1$" \
	members ha add --name m1 --backend shim --token-label m1
ov_text | grep -q '^m1$' && pass "order: the config member is written by name" ||
	fail "order: the config member is written by name" "$(ov_text)"
sleep "$settle"
ord open
case $REPLY in *" m2") pass "order: m2 first again" ;; *) fail "order: m2 first again" "$REPLY" ;; esac

# A damaged overlay: the CLI refuses it with FILE:LINE, the module uses the config order.
ov_damage 'm2
m1 backend=nope token_label=m1
'
expect_cli "order: the CLI refuses a damaged overlay with file:line" 1 "store:ha.members:2: unknown backend" \
	members ha
expect_cli "order: ... and changes to it" 1 "ha.members:2:" members ha top m2
sleep "$settle"
ord "wait-member m1 10"
[ "$REPLY" = "wait-member m1 ok" ] && pass "order: the module ignores a damaged overlay (config order)" ||
	fail "order: the module ignores a damaged overlay (config order)" "$REPLY"
grep -q "ignoring the member order overlay: store:ha.members:2:" "$ORD_OUT" &&
	pass "order: the module said why it ignores the overlay" ||
	fail "order: the module said why it ignores the overlay" "$(cat "$ORD_OUT")"
expect_cli "order: members ha reset" 0 "slot ha: m1, m2" members ha reset
[ -z "$(ov_text)" ] && pass "order: reset removes the overlay" || fail "order: reset removes the overlay" "$(ov_text)"
if cli audit --json --slot ha >"$TMP/a.json" 2>&1 &&
	json "$TMP/a.json" '[.rows[] | select(.what == "member-order")] | last | .from == "damaged" and .to == "m1,m2 (config)"'; then
	pass "order: reset is an audit row"
else
	fail "order: reset is an audit row" "$(cat "$TMP/a.json")"
fi
expect_cli "order: audit --verify holds with member-order rows" 0 "" audit --verify

ord quit
[ "$REPLY" = bye ] && pass "order: ordertest finishes cleanly" ||
	fail "order: ordertest finishes cleanly" "$REPLY $(cat "$ORD_OUT")"
wait "$ord_pid"
rc=$?
[ $rc -eq 0 ] && pass "order: ordertest exit 0" || fail "order: ordertest exit 0" "exit $rc"

# --- members add checks before it writes ----------------------------------------------------------
# no_overlay NAME: the refused add left no overlay behind.
no_overlay() {
	[ -z "$(ov_text)" ] && pass "$1: nothing written" || fail "$1: nothing written" "$(ov_text)"
}
umask 077
printf '%s\n' "$TEST_USER_PIN" >"$TMP/pin.ok"
printf '%s\n' "$TEST_USER_PIN" >"$TMP/pin.open"
chmod 0644 "$TMP/pin.open"
printf '0000\n' >"$TMP/pin.wrong"
expect_cli "add: a token that does not exist is refused" 1 "no such token on backend shim" \
	members ha add --name x --backend shim --token-label no-such-token
no_overlay "add: missing token"
expect_cli "add: the same token as a member (same selector) is refused" 1 \
	"member 2 'm2' is already token_label=m2 on backend shim" \
	members ha add --name m2b --backend shim --token-label m2
serial_m2=$(cli slots --json | jq -r '.slots[0].members[1].token.serial')
expect_cli "add: the same token by another selector (serial) is refused" 1 \
	"member 2 'm2' already uses that token" \
	members ha add --name m2s --backend shim --token-serial "$serial_m2"
expect_cli "add: a name in use is refused" 1 "already has a member 'm2'" \
	members ha add --name m2 --backend shim --token-label m2
cli members ha delete m1 >/dev/null 2>&1
expect_cli "add: a PIN file readable by others is refused (names the fix)" 1 "too open (use chmod 600)" \
	members ha add --name m1b --backend shim --token-label m1 --pin-source "file:$TMP/pin.open"
expect_cli "add: a missing PIN file is refused" 1 "No such file" \
	members ha add --name m1b --backend shim --token-label m1 --pin-source "file:$TMP/pin.none"
expect_cli "add: an unset PIN variable is refused" 1 "is not set" \
	members ha add --name m1b --backend shim --token-label m1 --pin-source env:P11P_NO_SUCH_VAR
expect_cli "add: a PIN that does not log in is refused" 1 "does not log in: C_Login: CKR_PIN_INCORRECT" \
	members ha add --name m1b --backend shim --token-label m1 --pin-source "file:$TMP/pin.wrong"
[ "$(ov_text)" = m2 ] && pass "add: refusals left the order alone" ||
	fail "add: refusals left the order alone" "$(ov_text)"
softhsm2-util --init-token --free --label m3 --pin "$TEST_USER_PIN" --so-pin "$TEST_SO_PIN" >/dev/null
echo 'm3 hang 60' >"$P11SHIM_CONTROL"
start=$(date +%s)
expect_cli "add: a token that hangs is refused within the deadline" 1 "" \
	members ha add --name m3 --backend shim --token-label m3
took=$(($(date +%s) - start))
[ $took -lt 30 ] && pass "add: ... in ${took}s (deadline)" || fail "add: ... deadline" "${took}s"
: >"$P11SHIM_CONTROL"
expect_cli "add: a private PIN file that logs in" 0 "slot ha: m2, m1b$" \
	members ha add --name m1b --backend shim --token-label m1 --pin-source "file:$TMP/pin.ok"

# test-connection and health follow the effective order (the added member included).
expect_cli "test-connection: the added member, numbered as members numbers it" 0 \
	"^ha member 2 m1b (shim, token_label=m1): Connected$" test-connection ha
cli test-connection ha --json >"$TMP/tc.json" 2>&1
json "$TMP/tc.json" '[.members[] | [.member, .name, .added, .connected]] == [[1,"m2",false,true],[2,"m1b",true,true]]' &&
	pass "test-connection --json: effective order, numbers from 1" ||
	fail "test-connection --json: effective order, numbers from 1" "$(cat "$TMP/tc.json")"
expect_cli "health: the added member" 0 "^ha member 2 m1b: healthy" health ha
cli slots --json >"$TMP/sl.json" 2>&1
json "$TMP/sl.json" '.slots[0].order == "overlay" and ([.slots[0].members[] | [.member, .name]] == [[1,"m2"],[2,"m1b"]])' &&
	pass "slots: effective order, numbers from 1" || fail "slots: effective order, numbers from 1" "$(cat "$TMP/sl.json")"
printf '%s\n' "$TEST_USER_PIN" | cli sync --check ha >"$TMP/out" 2>&1
grep -q '^  member 1 m2: ' "$TMP/out" && grep -q '^  member 2 m1b: ' "$TMP/out" &&
	pass "sync --check: members numbered from 1 in the effective order" ||
	fail "sync --check: members numbered from 1 in the effective order" "$(cat "$TMP/out")"
cli members ha reset >/dev/null 2>&1

# --- vendor return codes by name -----------------------------------------------------------------
echo 'm2 fail-fn C_GenerateRandom 0xd0310001' >"$P11SHIM_CONTROL"
expect_cli "health: a p11proxy code by its name" 1 "C_GenerateRandom: P11PROXY_CKR_KEY_DEACTIVATED" health ha
echo 'm2 fail-fn C_GenerateRandom 0x80000099' >"$P11SHIM_CONTROL"
expect_cli "health: another vendor code as CKR_VENDOR_DEFINED+0x..." 1 \
	"C_GenerateRandom: CKR_VENDOR_DEFINED+0x99" health ha
: >"$P11SHIM_CONTROL"

# --- nothing from a damaged overlay reaches the terminal raw -------------------------------------
# raw_controls FILE: does FILE hold control bytes other than newline?
raw_controls() {
	python3 -c 'import sys; d = open(sys.argv[1], "rb").read()
sys.exit(0 if any(b < 0x20 and b != 0x0a or b == 0x7f for b in d) else 1)' "$1"
}
ov_damage "$(printf 'm2\nm\177bad\n')"
for c in "members ha" "health ha" "slots" "test-connection ha"; do
	# shellcheck disable=SC2086
	cli $c >"$TMP/out" 2>&1
	if grep -qF 'm\x7fbad' "$TMP/out" && ! raw_controls "$TMP/out"; then
		pass "escape: $c shows a DEL byte of the overlay as \\x7f"
	else
		fail "escape: $c shows a DEL byte of the overlay as \\x7f" "$(od -c "$TMP/out" | head -5)"
	fi
done
cli members ha --json >"$TMP/out" 2>/dev/null
# JSON needs no escape for DEL: the document parses and the message holds the byte as it was.
json "$TMP/out" '.ok == false and (.error | contains("m\u007fbad"))' &&
	pass "escape: --json carries the byte in valid JSON" ||
	fail "escape: --json carries the byte in valid JSON" "$(cat "$TMP/out")"
# A valid overlay whose added member's token label holds ESC [ 3 1 m (%-encoded in the file).
ov_damage 'm2
m9 backend=shim token_label=x%1b[31my
'
for c in "members ha" "health ha" "test-connection ha" "sync --check ha"; do
	# shellcheck disable=SC2086
	printf '%s\n' "$TEST_USER_PIN" | cli $c >"$TMP/out" 2>&1
	if grep -qF 'x\x1b[31my' "$TMP/out" && ! raw_controls "$TMP/out"; then
		pass "escape: $c shows an ESC of a member's token label as \\x1b"
	else
		fail "escape: $c shows an ESC of a member's token label as \\x1b" "$(od -c "$TMP/out" | head -8)"
	fi
done
cli members ha reset >/dev/null 2>&1

# --- health -------------------------------------------------------------------------------------

expect_cli "health: both members up: exit 0" 0 "^healthy (2 members)" health
echo 'm1 fail CKR_DEVICE_ERROR' >"$P11SHIM_CONTROL"
expect_cli "health: m1 failing: exit 1, m1 named" 1 "^ha member 1 m1: unhealthy" health
cli health ha --json >"$TMP/health.json" 2>/dev/null
rc=$?
if [ $rc -eq 1 ] && json "$TMP/health.json" '.healthy == false and
	(.slots[0].members | map(select(.healthy == false)) | map(.name)) == ["m1"] and
	(.slots[0].members[0].reason | type) == "string"'; then
	pass "health: --json names the unhealthy member"
else
	fail "health: --json names the unhealthy member" "exit $rc: $(cat "$TMP/health.json")"
fi
: >"$P11SHIM_CONTROL"

# --- health --listen --------------------------------------------------------------------------

if [ "$MODE" = valgrind ]; then
	skip "health: --listen" "HTTP part not run under valgrind (slow, threads of libmicrohttpd)"
	return
fi
if ! command -v curl >/dev/null 2>&1; then
	skip "health: --listen" "curl missing (tests/install-deps.sh installs it)"
	return
fi
# Port 0: the kernel picks a free port, the server prints it.
P11SHIM_LOG=$TMP/server.log "$CLI" health --listen 127.0.0.1:0 >"$TMP/server.out" \
	2>"$TMP/server.err" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; rm -rf "$TMP"' EXIT
port=
for _ in $(seq 100); do
	port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$TMP/server.out")
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	fail "health: --listen starts" "$(cat "$TMP/server.err")"
	kill "$SERVER" 2>/dev/null
	return
fi
URL=http://127.0.0.1:$port
code() {
	curl -s -o "$TMP/body" -w '%{http_code}' --max-time 20 "$@"
}
[ "$(code "$URL/health")" = 204 ] && pass "health: GET /health 204 when healthy" ||
	fail "health: GET /health 204 when healthy" "$(cat "$TMP/body")"
echo 'm1 fail CKR_DEVICE_ERROR' >"$P11SHIM_CONTROL"
sleep 1.1 # past the one-second cache
c=$(code "$URL/health")
if [ "$c" = 500 ] && json "$TMP/body" '.healthy == false and
	([.unhealthy[] | .name] == ["m1"]) and .unhealthy[0].member == 1 and .unhealthy[0].slot == "ha"'; then
	pass "health: 500 with a JSON body naming m1"
else
	fail "health: 500 with a JSON body naming m1" "$c $(cat "$TMP/body")"
fi
[ "$(code "$URL/other")" = 404 ] && pass "health: other path 404" || fail "health: other path 404"
[ "$(code -X POST -d x=1 "$URL/health")" = 405 ] && pass "health: POST 405" || fail "health: POST 405"
# The cache: 20 requests within a second probe the members once (two sessions), not 20 times.
sleep 1.1
before=$(grep -c '^C_OpenSession m2 ' "$TMP/server.log")
for _ in $(seq 20); do code "$URL/health" >/dev/null; done
after=$(grep -c '^C_OpenSession m2 ' "$TMP/server.log")
[ $((after - before)) -le 2 ] && pass "health: probes at most once a second ($((after - before)) rounds)" ||
	fail "health: probes at most once a second" "$((after - before)) rounds for 20 requests"
if ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; then
	pass "health: listens on the given address only"
elif ! command -v ss >/dev/null 2>&1; then
	skip "health: listens on the given address only" "no ss"
else
	fail "health: listens on the given address only" "$(ss -ltn | grep ":$port ")"
fi
: >"$P11SHIM_CONTROL"
kill -TERM "$SERVER"
wait "$SERVER"
rc=$?
[ $rc -eq 0 ] && pass "health: --listen stops on SIGTERM (exit 0)" ||
	fail "health: --listen stops on SIGTERM (exit 0)" "exit $rc $(cat "$TMP/server.err")"
