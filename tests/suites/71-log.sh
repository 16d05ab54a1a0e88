# `log: stderr|syslog` (proxy.yaml(5)): the module's messages reach the syslog socket as one
# RFC 3164 line each, and nothing of them reaches the application's stderr or stdout.
# P11PROXY_SYSLOG_SOCKET points the module at a Unix datagram socket this suite listens on (a
# syslog daemon's /dev/log, without the daemon). The client is pkcs11-tool, so normal mode only;
# lib/base/log.c itself is checked in every mode by unit/test_log.
[ "$MODE" = normal ] || { skip "log" "normal mode only (log.c: unit/test_log in every mode)"; return 0; }
for tool in pkcs11-tool python3; do
	command -v "$tool" >/dev/null 2>&1 || { skip "log" "$tool not installed (make deps)"; return 0; }
done
mk_tmp
softhsm_setup "$TMP" m1 || { fail "log: softhsm setup"; return 0; }

# conf LINE...: two backends, one of which cannot load (a program, not a library), and a slot
# whose member's token is not there: both are reported at C_Initialize. LINEs are added at the
# top level.
conf() {
	{
		echo "backends:"
		echo "  - name: softhsm"
		echo "    module: $SOFTHSM_MODULE"
		echo "  - name: broken"
		echo "    module: /bin/sh"
		echo "slots:"
		echo "  - label: v-m1"
		echo "    members: [{backend: softhsm, token_label: m1}]"
		echo "  - label: v-gone"
		echo "    members: [{name: gone, backend: softhsm, token_label: gone}]"
		echo "state_dir: $TMP"
		for line in "$@"; do echo "$line"; done
	} >"$TMP/proxy.yaml"
	export P11PROXY_CONF=$TMP/proxy.yaml
}

# A syslog daemon's socket: every datagram, one a line, in $TMP/syslog.
SOCK=$TMP/log.sock
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536) + b"\n")
' "$SOCK" "$TMP/syslog" &
LISTENER=$!
trap 'kill $LISTENER 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { fail "log: syslog listener"; return 0; }

# list: pkcs11-tool -L through the module; stdout in $TMP/out, stderr in $TMP/err.
list() {
	: >"$TMP/syslog"
	pkcs11-tool --module "$PROXY_MODULE" -L >"$TMP/out" 2>"$TMP/err"
	sleep 0.2 # the listener writes what it received
}

# The default, and log: stderr: messages on stderr, nothing on the socket.
export P11PROXY_SYSLOG_SOCKET=$SOCK
for setting in "" "log: stderr"; do
	conf "$setting"
	list
	name="log: ${setting:-default}: messages on stderr, none to syslog"
	if grep -q "^p11proxy: backend 'broken': cannot load /bin/sh" "$TMP/err" &&
		[ ! -s "$TMP/syslog" ] && ! grep -q '^p11proxy' "$TMP/out"; then
		pass "$name"
	else
		fail "$name" "stderr: $(head -c 300 "$TMP/err"); syslog: $(head -c 300 "$TMP/syslog")"
	fi
done

# The module applies `log:` once it has read the configuration (lib/virt/state.c).
if ! grep -q 'p11p_log_set_target' "$SRCDIR/lib/virt/state.c"; then
	skip "log: syslog" "lib/virt/state.c does not apply log: yet (p11p_log_set_target(cfg->log, ...) after p11p_config_load)"
	return 0
fi

conf "log: syslog"
list
# <12>: facility user (1 << 3) | severity warning (4).
re="^<12>[A-Z][a-z][a-z] [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9] p11proxy\[[0-9]+\]: "
if grep -Eq "${re}backend 'broken': cannot load /bin/sh" "$TMP/syslog"; then
	pass "log: syslog: a message arrives as an RFC 3164 line"
else
	fail "log: syslog: a message arrives as an RFC 3164 line" "syslog: $(head -c 300 "$TMP/syslog")"
fi
# (The slot description, "p11proxy virtual slot v-m1", is the application's output, not a message.)
if grep -q "^p11proxy" "$TMP/err" "$TMP/out"; then
	fail "log: syslog: nothing on the application's stderr or stdout" "$(grep "^p11proxy" "$TMP/err" "$TMP/out" | head -3)"
else
	pass "log: syslog: nothing on the application's stderr or stdout"
fi
if grep -q "token label *: v-m1" "$TMP/out"; then
	pass "log: syslog: the application works as before"
else
	fail "log: syslog: the application works as before" "$(head -c 300 "$TMP/out")"
fi
# A member whose token is not there at C_Initialize is said once, not only in debug output.
if grep -q 'not found at' "$SRCDIR/lib/virt/state.c"; then
	n=$(grep -c "slot 'v-gone': member .*'gone'.* not found at C_Initialize" "$TMP/syslog")
	if [ "$n" = 1 ]; then
		pass "log: a member missing at load is reported once"
	else
		fail "log: a member missing at load is reported once" "$n lines: $(head -c 400 "$TMP/syslog")"
	fi
else
	skip "log: a member missing at load is reported once" "lib/virt/state.c still reports it in debug output only"
fi

conf "log: syslog" "log_facility: daemon"
list
if grep -Eq "^<28>.* p11proxy\[[0-9]+\]: backend 'broken'" "$TMP/syslog"; then
	pass "log: log_facility: daemon"
else
	fail "log: log_facility: daemon" "syslog: $(head -c 300 "$TMP/syslog")"
fi

# No syslog daemon: the messages go to stderr rather than nowhere, with the reason once.
export P11PROXY_SYSLOG_SOCKET=$TMP/no-daemon.sock
conf "log: syslog"
list
if grep -q "^p11proxy: syslog socket $TMP/no-daemon.sock: .*; messages go to standard error" "$TMP/err" &&
	grep -q "^p11proxy: backend 'broken'" "$TMP/err"; then
	pass "log: syslog without a daemon: messages on stderr"
else
	fail "log: syslog without a daemon: messages on stderr" "$(head -c 300 "$TMP/err")"
fi
