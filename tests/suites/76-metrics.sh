# shellcheck shell=bash
# GET /metrics of the health listener (issue 13, items 3 and 4): an application signs through the
# module on an HA slot over the fault-injecting shim while member m1 fails once; the listener's
# /metrics passes `promtool check metrics` and shows the listener's own probes, the module's
# counts from the application's statistics file (calls, m1 down then up, a failover), the
# replication backlog and the virtual keys by state. Statistics files of processes that are gone
# are removed, a damaged one of a live process is counted and said once, a state directory the
# module cannot write gives one message. And Type=notify: with NOTIFY_SOCKET, READY=1 arrives
# once the port accepts connections, STOPPING=1 at SIGTERM.
[ "$MODE" = normal ] || { skip "metrics" "normal mode only"; return 0; }
for tool in curl promtool python3 openssl pkcs11-tool; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		skip "metrics" "$tool missing (tests/install-deps.sh installs it)"
		return 0
	fi
done
# A PIN that cannot pass for a count or a time: the test looks for it where it must not be.
TEST_USER_PIN=pin-76-metrics
mk_tmp
mkdir -p "$TMP/state"
chmod 0700 "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "metrics: softhsm setup"; return; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control
: >"$P11SHIM_CONTROL"

# The same EC key on both tokens (as replication would have left it), and an AES key on m1 only:
# m2 lacks one key (the backlog).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -outform DER -out "$TMP/k.der" \
	2>/dev/null
head -c 32 /dev/urandom >"$TMP/aes.key"
for label in m1 m2; do
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$label" --login --pin "$TEST_USER_PIN" \
		--write-object "$TMP/k.der" --type privkey --id 01 --label sig >/dev/null 2>&1 ||
		{ fail "metrics: key import on $label"; return; }
done
pkcs11-tool --module "$SOFTHSM_MODULE" --token-label m1 --login --pin "$TEST_USER_PIN" \
	--write-object "$TMP/aes.key" --type secrkey --key-type AES:32 --id 02 --label only-m1 \
	>/dev/null 2>&1 || { fail "metrics: AES key on m1"; return; }
rm -f "$TMP/aes.key"

# Members with their PIN (the listener lists their keys for the backlog; the application logs in
# with the same PIN, which the proxy checks).
export METRICS_PIN=$TEST_USER_PIN
write_conf() { # FILE STATE_DIR
	{
		printf 'state_dir: %s\n' "$2"
		printf 'backends:\n  - name: shim\n    module: %s\n' "$BUILD/tests/libshim.so"
		printf 'slots:\n  - label: ha\n    ha: { mode: failover, probe_interval: 100ms }\n'
		printf '    members:\n'
		for m in m1 m2; do
			printf '      - name: %s\n        backend: shim\n        token_label: %s\n' "$m" "$m"
			printf '        pin: env:METRICS_PIN\n'
		done
	} >"$1"
}
write_conf "$TMP/proxy.yaml" "$TMP/state"
export P11PROXY_CONF=$TMP/proxy.yaml

# Virtual keys: both recorded, the AES key deactivated.
if "$CLI" sync ha >"$TMP/sync.out" 2>&1 && "$CLI" keys deactivate only-m1 >>"$TMP/sync.out" 2>&1; then
	pass "metrics: keys recorded, one deactivated"
else
	fail "metrics: keys recorded, one deactivated" "$(cat "$TMP/sync.out")"
fi

# A Unix datagram socket standing in for systemd's notification socket: each message is
# written to notify.log; at READY=1 it connects to the listener's port first (which must accept).
cat >"$TMP/notify.py" <<'PY'
import os, re, socket, sys, time
sock_path, log_path, out_path = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
s.settimeout(60)
with open(log_path, "w", buffering=1) as log:
    log.write("bound\n")
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            log.write("timeout\n")
            break
        for line in msg.split("\n"):
            log.write("msg " + line + "\n")
        if "READY=1" in msg.split("\n"):
            m = re.search(r"\(port (\d+)\)", open(out_path).read())
            try:
                c = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5)
                c.close()
                log.write("ready: port accepts\n")
            except Exception as e:
                log.write("ready: port refuses: %r\n" % (e,))
        if "STOPPING=1" in msg.split("\n"):
            break
PY
python3 "$TMP/notify.py" "$TMP/notify.sock" "$TMP/notify.log" "$TMP/server.out" &
NOTIFIER=$!
for _ in $(seq 100); do [ -S "$TMP/notify.sock" ] && break; sleep 0.1; done

# The listener, on a port the kernel picks.
NOTIFY_SOCKET=$TMP/notify.sock "$CLI" health --listen 127.0.0.1:0 >"$TMP/server.out" \
	2>"$TMP/server.err" &
SERVER=$!
SIGNER=
trap 'kill "$SERVER" "$NOTIFIER" $SIGNER 2>/dev/null; rm -rf "$TMP"' EXIT
port=
for _ in $(seq 100); do
	port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$TMP/server.out")
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	fail "metrics: the listener starts" "$(cat "$TMP/server.err")"
	return
fi
URL=http://127.0.0.1:$port
for _ in $(seq 50); do grep -q '^ready' "$TMP/notify.log" && break; sleep 0.1; done
if grep -q '^ready: port accepts' "$TMP/notify.log" &&
	grep -q '^msg STATUS=listening on 127.0.0.1:0 (port' "$TMP/notify.log"; then
	pass "metrics: READY=1 (sd_notify) once the port accepts connections"
else
	fail "metrics: READY=1 (sd_notify) once the port accepts connections" "$(cat "$TMP/notify.log")"
fi

# fetch: GET /metrics into $TMP/metrics (and keeps every version for promtool).
n_fetch=0
fetch() {
	n_fetch=$((n_fetch + 1))
	curl -s --max-time 30 -o "$TMP/metrics" -w '%{http_code} %{content_type}' "$URL/metrics" \
		>"$TMP/status"
	cp "$TMP/metrics" "$TMP/metrics.$n_fetch"
}
# value SERIES: the value of one series (name{labels} exactly as exposed) in the last fetch.
value() {
	awk -v k="$1" '$1 == k { print $2 }' "$TMP/metrics"
}
# wait_value SERIES WANT: fetch until the series has that value (30 s at most).
wait_value() {
	for _ in $(seq 150); do
		fetch
		[ "$(value "$1")" = "$2" ] && return 0
		sleep 0.2
	done
	return 1
}
# at_least SERIES MIN: the value in the last fetch is an integer >= MIN.
at_least() {
	local v
	v=$(value "$1")
	[ -n "$v" ] && [ "$v" -ge "$2" ] 2>/dev/null
}
promcheck() { # NAME FILE
	if out=$(promtool check metrics <"$2" 2>&1); then
		pass "metrics: promtool check metrics ($1)"
	else
		fail "metrics: promtool check metrics ($1)" "$out"
	fi
}

fetch
if [ "$(cat "$TMP/status")" = "200 text/plain; version=0.0.4; charset=utf-8" ]; then
	pass "metrics: GET /metrics 200, text format 0.0.4"
else
	fail "metrics: GET /metrics 200, text format 0.0.4" "$(cat "$TMP/status")"
fi
promcheck "no application yet" "$TMP/metrics"
if [ "$(value p11proxy_module_processes)" = 0 ] && [ "$(value 'p11proxy_member_up{slot="ha",member="m1"}')" = 1 ]; then
	pass "metrics: no process using the module; both members answer the listener"
else
	fail "metrics: no process using the module; both members answer the listener" "$(grep -v '^#' "$TMP/metrics")"
fi

# The application: one session signing every 50 ms (the proxy checks the PIN against the
# members' PIN, METRICS_PIN).
DEMO_PIN=$TEST_USER_PIN "$BUILD/tests/signloop" "$PROXY_MODULE" ha sig 60 >"$TMP/signer.out" \
	2>"$TMP/signer.err" &
SIGNER=$!
trap 'kill "$SERVER" "$NOTIFIER" $SIGNER 2>/dev/null; rm -rf "$TMP"' EXIT
M1='{slot="ha",member="m1"}'
M2='{slot="ha",member="m2"}'
if wait_value p11proxy_module_processes 1 && wait_value "p11proxy_module_member_state{slot=\"ha\",member=\"m1\",state=\"up\"}" 1 &&
	[ -f "$TMP/state/stats/$SIGNER.stats" ]; then
	pass "metrics: the application's statistics file ($SIGNER.stats) is read"
else
	fail "metrics: the application's statistics file is read" "$(ls -la "$TMP/state/stats" 2>&1)"
fi
sleep 1.5
fetch
if at_least "p11proxy_module_member_calls_total$M1" 20 &&
	at_least "p11proxy_module_member_sessions$M1" 1 &&
	[ "$(value "p11proxy_module_member_failovers_total$M1")" = 0 ] &&
	at_least 'p11proxy_module_backend_calls_total{backend="shim"}' 20; then
	pass "metrics: calls counted on m1, which serves the session"
else
	fail "metrics: calls counted on m1, which serves the session" "$(grep '^p11proxy_module' "$TMP/metrics")"
fi

# m1 fails: the module marks it down and moves the session to m2; the listener's probe fails too.
echo 'm1 fail CKR_DEVICE_ERROR' >"$P11SHIM_CONTROL"
if wait_value "p11proxy_module_member_state{slot=\"ha\",member=\"m1\",state=\"down\"}" 1; then
	pass "metrics: the module sees m1 down"
else
	fail "metrics: the module sees m1 down" "$(grep '^p11proxy_module_member' "$TMP/metrics")"
fi
wait_value "p11proxy_member_up$M1" 0
if [ "$(value "p11proxy_member_up$M1")" = 0 ] && [ "$(value "p11proxy_member_up$M2")" = 1 ] &&
	[ "$(value 'p11proxy_slot_healthy{slot="ha"}')" = 0 ]; then
	pass "metrics: the listener's probe: m1 down, m2 up, slot unhealthy"
else
	fail "metrics: the listener's probe: m1 down, m2 up, slot unhealthy" "$(grep '^p11proxy_\(member_up\|slot\)' "$TMP/metrics")"
fi
cp "$TMP/metrics" "$TMP/metrics.down"
promcheck "m1 down" "$TMP/metrics.down"

# m1 comes back: two good probes and it is up again.
: >"$P11SHIM_CONTROL"
if wait_value "p11proxy_module_member_state{slot=\"ha\",member=\"m1\",state=\"up\"}" 1 &&
	wait_value "p11proxy_member_up$M1" 1; then
	pass "metrics: m1 up again (the module and the listener)"
else
	fail "metrics: m1 up again (the module and the listener)" "$(grep 'm1' "$TMP/metrics")"
fi
fetch
promcheck "m1 back" "$TMP/metrics"
if at_least "p11proxy_module_member_failovers_total$M1" 1 &&
	at_least "p11proxy_module_member_down_total$M1" 1 &&
	at_least "p11proxy_module_member_errors_total{slot=\"ha\",member=\"m1\",class=\"server\"}" 1 &&
	at_least 'p11proxy_module_backend_errors_total{backend="shim",class="server"}' 1 &&
	at_least "p11proxy_module_member_calls_total$M2" 1 &&
	at_least "p11proxy_module_member_sessions$M2" 1 &&
	[ "$(value "p11proxy_module_member_failovers_total$M2")" = 0 ] &&
	[ "$(value "p11proxy_module_member_hung_calls$M1")" = 0 ]; then
	pass "metrics: failovers >= 1, down >= 1 and server errors on m1; the session on m2"
else
	fail "metrics: failovers >= 1, down >= 1 and server errors on m1; the session on m2" \
		"$(grep '^p11proxy_module' "$TMP/metrics")"
fi
if grep -q "p11proxy_member_probe_duration_seconds$M1 [0-9.]*\$" "$TMP/metrics" &&
	[ "$(value "p11proxy_member_priority$M2")" = 2 ] &&
	grep -q '^p11proxy_member_info{slot="ha",member="m2",backend="shim"} 1$' "$TMP/metrics"; then
	pass "metrics: probe latency, priority and backend of each member"
else
	fail "metrics: probe latency, priority and backend of each member" "$(grep '^p11proxy_member' "$TMP/metrics")"
fi
if [ "$(value "p11proxy_replication_listed$M1")" = 1 ] && [ "$(value "p11proxy_replication_listed$M2")" = 1 ] &&
	[ "$(value "p11proxy_replication_backlog_keys$M1")" = 0 ] &&
	[ "$(value "p11proxy_replication_backlog_keys$M2")" = 1 ]; then
	pass "metrics: replication backlog: m2 lacks one key (as sync --check counts)"
else
	fail "metrics: replication backlog: m2 lacks one key" "$(grep '^p11proxy_replication' "$TMP/metrics")"
fi
if [ "$(value p11proxy_index_ok)" = 1 ] &&
	[ "$(value 'p11proxy_virtual_keys{slot="ha",state="active"}')" = 1 ] &&
	[ "$(value 'p11proxy_virtual_keys{slot="ha",state="deactivated"}')" = 1 ] &&
	[ "$(value 'p11proxy_virtual_keys{slot="ha",state="deleted"}')" = 0 ]; then
	pass "metrics: virtual keys by state (1 active, 1 deactivated)"
else
	fail "metrics: virtual keys by state" "$(grep '^p11proxy_\(virtual\|index\)' "$TMP/metrics")"
fi
# Never a secret: the PIN is nowhere in the statistics file or the exposition.
if ! grep -q "$METRICS_PIN" "$TMP/state/stats/$SIGNER.stats" "$TMP/metrics" &&
	[ "$(stat -c %a "$TMP/state/stats/$SIGNER.stats")" = 600 ] &&
	[ "$(stat -c %a "$TMP/state/stats")" = 700 ]; then
	pass "metrics: the statistics file is private and holds no PIN"
else
	fail "metrics: the statistics file is private and holds no PIN" "$(ls -la "$TMP/state/stats"; cat "$TMP/state/stats/$SIGNER.stats")"
fi

# Statistics files the listener meets: a damaged one of a live process (this shell) is counted
# and said once; one of a process that is gone is removed; so is a writer's temp file.
sh -c 'exit 0' &
dead=$!
wait "$dead"
printf 'garbage\n' >"$TMP/state/stats/$$.stats"
printf 'p11proxy-stats 1\npid %s start 1\nend\n' "$dead" >"$TMP/state/stats/$dead.stats"
: >"$TMP/state/stats/.$dead.tmp"
sleep 1.1
fetch
fetch
if [ "$(value p11proxy_module_stats_errors)" = 1 ] && [ "$(value p11proxy_module_processes)" = 1 ] &&
	[ ! -e "$TMP/state/stats/$dead.stats" ] && [ ! -e "$TMP/state/stats/.$dead.tmp" ] &&
	[ -e "$TMP/state/stats/$$.stats" ] &&
	[ "$(grep -c "metrics: $TMP/state/stats/$$.stats:1: not a p11proxy statistics file" "$TMP/server.err")" = 1 ]; then
	pass "metrics: a damaged file counted and said once, files of ended processes removed"
else
	fail "metrics: a damaged file counted and said once, files of ended processes removed" \
		"$(ls -la "$TMP/state/stats"; cat "$TMP/server.err"; grep '^p11proxy_module_\(proc\|stats\)' "$TMP/metrics")"
fi
rm -f "$TMP/state/stats/$$.stats"

# The application killed: its file stays behind, the listener ignores and removes it.
kill -9 "$SIGNER" 2>/dev/null
wait "$SIGNER" 2>/dev/null
[ -e "$TMP/state/stats/$SIGNER.stats" ] && left=yes || left=no
sleep 1.1
fetch
if [ "$left" = yes ] && [ "$(value p11proxy_module_processes)" = 0 ] &&
	[ ! -e "$TMP/state/stats/$SIGNER.stats" ] && ! grep -q '^p11proxy_module_member_state' "$TMP/metrics"; then
	pass "metrics: a killed application's file is ignored and removed"
else
	fail "metrics: a killed application's file is ignored and removed" "left=$left $(ls -la "$TMP/state/stats")"
fi
promcheck "after the application" "$TMP/metrics"
SIGNER=

# An application that ends normally removes its own file (C_Finalize).
DEMO_PIN=$TEST_USER_PIN "$BUILD/tests/signloop" "$PROXY_MODULE" ha sig 1.5 >/dev/null 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -z "$(ls -A "$TMP/state/stats")" ]; then
	pass "metrics: C_Finalize removes the process's statistics file"
else
	fail "metrics: C_Finalize removes the process's statistics file" "exit $rc: $(ls -la "$TMP/state/stats")"
fi

# A state directory the module cannot write its statistics in: signing works, one message.
mkdir -p "$TMP/ro"
chmod 0700 "$TMP/ro"
: >"$TMP/ro/stats" # a file where the directory would be: every write fails
write_conf "$TMP/ro.yaml" "$TMP/ro"
P11PROXY_CONF=$TMP/ro.yaml DEMO_PIN=$TEST_USER_PIN "$BUILD/tests/signloop" "$PROXY_MODULE" ha sig 2.5 \
	>/dev/null 2>"$TMP/ro.err"
rc=$?
n=$(grep -c 'no statistics for the metrics listener from this process' "$TMP/ro.err")
if [ $rc -eq 0 ] && [ "$n" = 1 ]; then
	pass "metrics: no statistics where they cannot be written: signing works, one message"
else
	fail "metrics: no statistics where they cannot be written" "exit $rc, $n messages: $(cat "$TMP/ro.err")"
fi

# Only GET and HEAD; SIGTERM: STOPPING=1, exit 0.
c=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x=1 "$URL/metrics")
if [ "$c" = 405 ]; then pass "metrics: POST /metrics 405"; else fail "metrics: POST /metrics 405" "$c"; fi
kill -TERM "$SERVER"
wait "$SERVER"
rc=$?
wait "$NOTIFIER" 2>/dev/null
if [ $rc -eq 0 ] && grep -q '^msg STOPPING=1' "$TMP/notify.log"; then
	pass "metrics: SIGTERM: STOPPING=1 (sd_notify), exit 0"
else
	fail "metrics: SIGTERM: STOPPING=1 (sd_notify), exit 0" "exit $rc: $(cat "$TMP/notify.log" "$TMP/server.err")"
fi
trap 'rm -rf "$TMP"' EXIT
