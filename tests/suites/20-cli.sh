# The admin CLI (build/p11proxy) against a hermetic SoftHSM2 with two tokens.
# Sourced by tests/run.sh with tests/lib.sh loaded.

mk_tmp
if ! softhsm_setup "$TMP" m1 m2; then
	fail "cli: softhsm setup"
	exit 0
fi
proxy_conf "$TMP/proxy.yaml" m1 m2
GOOD=$TMP/proxy.yaml

# The CLI under valgrind in valgrind mode.

# json_ok FILE [PYTHON-EXPR]: FILE parses as JSON and, when given, the
# expression (over `d`, the parsed document) is true.
json_ok() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if len(sys.argv) > 2 and not eval("(" + sys.argv[2] + ")"):
    sys.exit(1)
' "$@"
}

# --- usage -----------------------------------------------------------------------------------

cli >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q '^usage: p11proxy' "$TMP/err"; then
	pass "cli: no command is a usage error (exit 2)"
else
	fail "cli: no command is a usage error (exit 2)" "exit $rc"
fi

cli frobnicate >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "unknown command 'frobnicate'" "$TMP/err"; then
	pass "cli: unknown command (exit 2)"
else
	fail "cli: unknown command (exit 2)" "exit $rc"
fi

# Every command that takes an action answers an unknown one the same way, naming its actions.
for c in "keys frob:list, show, deactivate, activate, delete, rotate, allow, deny, rewrap, help" \
	"pin frob:status, reset, help" "policy frob:show, set, reset, help" "index frob:import, help" \
	"replication-key frob:create, help" "store frob:init, help" \
	"members SLOT frob:top, up, down, bottom, delete, add, reset, help"; do
	# shellcheck disable=SC2086 # the command words split on purpose
	expect_cli "cli: ${c%% *}: an unknown action is a usage error naming the actions" 2 \
		"^p11proxy: unknown action 'frob' (${c#*:})\$" ${c%%:*}
done

cli --help >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -q '^  slots ' "$TMP/out" && grep -q '^  test-connection ' "$TMP/out" &&
	grep -q '^  check-config ' "$TMP/out" && grep -q '^  hash-pin ' "$TMP/out"; then
	pass "cli: --help lists the commands"
else
	fail "cli: --help lists the commands" "exit $rc"
fi

if cli help >"$TMP/out2" 2>/dev/null && cmp -s "$TMP/out" "$TMP/out2"; then
	pass "cli: help = --help"
else
	fail "cli: help = --help"
fi

if cli --version 2>/dev/null | grep -Eq '^p11proxy [0-9]+\.[0-9]+$'; then
	pass "cli: --version"
else
	fail "cli: --version"
fi

cli slots --bogus >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q '^usage: p11proxy .*slots' "$TMP/err"; then
	pass "cli: unknown command option (exit 2, usage)"
else
	fail "cli: unknown command option (exit 2, usage)" "exit $rc"
fi

# --- check-config ----------------------------------------------------------------------------

out=$(cli check-config --config "$GOOD" 2>"$TMP/err")
rc=$?
if [ $rc -eq 0 ] && [ "$out" = "$GOOD: OK (1 backend, 2 slots)" ] && [ ! -s "$TMP/err" ]; then
	pass "cli: check-config good file"
else
	fail "cli: check-config good file" "exit $rc: $out $(cat "$TMP/err")"
fi

# Without --config: $P11PROXY_CONF (set by proxy_conf).
out=$(cli check-config 2>/dev/null)
if [ "$out" = "$GOOD: OK (1 backend, 2 slots)" ]; then
	pass "cli: check-config uses P11PROXY_CONF"
else
	fail "cli: check-config uses P11PROXY_CONF" "$out"
fi

out=$(cli check-config "$GOOD" 2>/dev/null)
if [ "$out" = "$GOOD: OK (1 backend, 2 slots)" ]; then
	pass "cli: check-config FILE (positional)"
else
	fail "cli: check-config FILE (positional)" "$out"
fi

cat >"$TMP/bad.yaml" <<EOF
backends:
  - name: softhsm
    module: $SOFTHSM_MODULE
slots:
  - label: v-m1
    members:
      - backend: softhsm
        tokn_label: m1
EOF
cli check-config --config "$TMP/bad.yaml" >"$TMP/out" 2>"$TMP/err"
rc=$?
want="$TMP/bad.yaml:8:9: unknown key 'tokn_label' in member"
if [ $rc -eq 1 ] && [ "$(cat "$TMP/err")" = "$want" ] && [ ! -s "$TMP/out" ]; then
	pass "cli: check-config bad file: exact message, exit 1"
else
	fail "cli: check-config bad file: exact message, exit 1" \
		"exit $rc: got '$(cat "$TMP/err")', want '$want'"
fi

cli check-config --config "$TMP/does-not-exist.yaml" >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] && grep -q "^$TMP/does-not-exist.yaml" "$TMP/err"; then
	pass "cli: check-config missing file (exit 1)"
else
	fail "cli: check-config missing file (exit 1)" "exit $rc: $(cat "$TMP/err")"
fi

if cli --json check-config --config "$GOOD" >"$TMP/out" 2>/dev/null &&
	json_ok "$TMP/out" 'd["ok"] is True and d["slots"] == 2 and d["backends"] == 1'; then
	pass "cli: check-config --json"
else
	fail "cli: check-config --json" "$(cat "$TMP/out")"
fi

# --- slots -----------------------------------------------------------------------------------

cli slots >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -q '^slot 0: v-m1$' "$TMP/out" && grep -q '^slot 1: v-m2$' "$TMP/out" &&
	grep -q 'member 1 m1: backend softhsm .*token_label "m1"' "$TMP/out" &&
	grep -q 'token: label "m1", manufacturer "SoftHSM project"' "$TMP/out" &&
	grep -q 'token: label "m2"' "$TMP/out" && grep -q 'flags: .*token-initialized' "$TMP/out" &&
	grep -Eq 'backend slot: [0-9]+$' "$TMP/out"; then
	pass "cli: slots"
else
	fail "cli: slots" "exit $rc: $(cat "$TMP/out" "$TMP/err")"
fi

cli slots --json >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && python3 -c 'import json,sys; json.load(sys.stdin)' <"$TMP/out"; then
	pass "cli: slots --json is valid JSON"
else
	fail "cli: slots --json is valid JSON" "exit $rc: $(cat "$TMP/out" "$TMP/err")"
fi
if json_ok "$TMP/out" '[s["label"] for s in d["slots"]] == ["v-m1", "v-m2"] and
	[s["id"] for s in d["slots"]] == [0, 1] and
	all(s["members"][0]["found"] and s["members"][0]["backend"] == "softhsm" for s in d["slots"]) and
	d["slots"][1]["members"][0]["token"]["label"] == "m2" and
	d["slots"][0]["members"][0]["selector"] == {"type": "token_label", "value": "m1"} and
	"login-required" in d["slots"][0]["members"][0]["token"]["flags"]'; then
	pass "cli: slots --json content"
else
	fail "cli: slots --json content"
fi

# A slot with a member whose token is missing, and one with a second member.
cat >"$TMP/missing.yaml" <<EOF
backends:
  - name: softhsm
    module: $SOFTHSM_MODULE
slots:
  - label: v-pair
    members:
      - backend: softhsm
        token_label: m1
      - backend: softhsm
        token_label: m2
  - label: v-gone
    members:
      - backend: softhsm
        token_label: no-such-token
EOF
cli --config "$TMP/missing.yaml" slots >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -q '^slot 1: v-gone$' "$TMP/out" &&
	grep -q 'member 2 m2: backend softhsm .*token_label "m2"' "$TMP/out" &&
	grep -q 'backend slot: not found: ' "$TMP/out"; then
	pass "cli: slots shows members in order and a missing token"
else
	fail "cli: slots shows members in order and a missing token" "$(cat "$TMP/out" "$TMP/err")"
fi
if cli --json --config "$TMP/missing.yaml" slots >"$TMP/out" 2>/dev/null &&
	json_ok "$TMP/out" 'd["slots"][1]["members"][0]["found"] is False and
		d["slots"][1]["members"][0]["error"] and
		[m["token"]["label"] for m in d["slots"][0]["members"]] == ["m1", "m2"]'; then
	pass "cli: slots --json with a missing token"
else
	fail "cli: slots --json with a missing token" "$(cat "$TMP/out")"
fi

# --- test-connection -------------------------------------------------------------------------

cli test-connection >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && grep -q '^v-m1 member 1 m1 (softhsm, token_label=m1): Connected$' "$TMP/out" &&
	grep -q '^v-m2 member 1 m2 (softhsm, token_label=m2): Connected$' "$TMP/out"; then
	pass "cli: test-connection (no member PIN)"
else
	fail "cli: test-connection (no member PIN)" "exit $rc: $(cat "$TMP/out" "$TMP/err")"
fi

out=$(cli test-connection v-m2 2>&1)
if [ "$out" = "v-m2 member 1 m2 (softhsm, token_label=m2): Connected" ]; then
	pass "cli: test-connection SLOT by label"
else
	fail "cli: test-connection SLOT by label" "$out"
fi
out=$(cli test-connection 0 2>&1)
if [ "$out" = "v-m1 member 1 m1 (softhsm, token_label=m1): Connected" ]; then
	pass "cli: test-connection SLOT by id"
else
	fail "cli: test-connection SLOT by id" "$out"
fi
cli test-connection no-such-slot >/dev/null 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "no virtual slot 'no-such-slot'" "$TMP/err"; then
	pass "cli: test-connection unknown SLOT (exit 2)"
else
	fail "cli: test-connection unknown SLOT (exit 2)" "exit $rc"
fi

# Member PINs: from a 0600 file and from the environment. The key is `pin`.
umask 077
printf '%s\n' "$TEST_USER_PIN" >"$TMP/pin.txt"
chmod 0600 "$TMP/pin.txt"
printf '0000\n' >"$TMP/wrong-pin.txt"
chmod 0600 "$TMP/wrong-pin.txt"
# member_pin_conf FILE PIN-SOURCE-FOR-m1 PIN-SOURCE-FOR-m2
member_pin_conf() {
	cat >"$1" <<EOF
backends:
  - name: softhsm
    module: $SOFTHSM_MODULE
slots:
  - label: v-m1
    members:
      - backend: softhsm
        token_label: m1
        pin: $2
  - label: v-m2
    members:
      - backend: softhsm
        token_label: m2
        pin: $3
EOF
}
member_pin_conf "$TMP/pins.yaml" "file:$TMP/pin.txt" "env:P11P_TEST_PIN"
P11P_TEST_PIN=$TEST_USER_PIN cli --config "$TMP/pins.yaml" test-connection >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c ': Connected$' "$TMP/out")" -eq 2 ]; then
	pass "cli: test-connection with member PINs (file: 0600, env:)"
else
	fail "cli: test-connection with member PINs (file: 0600, env:)" \
		"exit $rc: $(cat "$TMP/out" "$TMP/err")"
fi

P11P_TEST_PIN=$TEST_USER_PIN cli --json --config "$TMP/pins.yaml" test-connection >"$TMP/out" \
	2>/dev/null
rc=$?
if [ $rc -eq 0 ] && json_ok "$TMP/out" 'd["ok"] is True and len(d["members"]) == 2 and
		all(m["connected"] and m["login"] for m in d["members"])'; then
	pass "cli: test-connection --json"
else
	fail "cli: test-connection --json" "exit $rc: $(cat "$TMP/out")"
fi

# Wrong PIN on m1 (file), right one on m2 (env): one failure, exit 1.
member_pin_conf "$TMP/wrong.yaml" "file:$TMP/wrong-pin.txt" "env:P11P_TEST_PIN"
P11P_TEST_PIN=$TEST_USER_PIN cli --config "$TMP/wrong.yaml" test-connection >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] &&
	grep -q '^v-m1 member 1 m1 (softhsm, token_label=m1): Not connected: .*CKR_PIN_INCORRECT' "$TMP/out" &&
	grep -q '^v-m2 member 1 m2 (softhsm, token_label=m2): Connected$' "$TMP/out"; then
	pass "cli: test-connection wrong PIN -> Not connected, exit 1"
else
	fail "cli: test-connection wrong PIN -> Not connected, exit 1" \
		"exit $rc: $(cat "$TMP/out" "$TMP/err")"
fi
if grep -q 0000 "$TMP/out" "$TMP/err"; then
	fail "cli: the wrong PIN is not printed"
else
	pass "cli: the wrong PIN is not printed"
fi

cli --config "$TMP/missing.yaml" test-connection >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] && grep -q '^v-gone member 1 no-such-token (softhsm, token_label=no-such-token): Not connected: ' "$TMP/out" &&
	[ "$(grep -c ': Connected$' "$TMP/out")" -eq 2 ]; then
	pass "cli: test-connection missing token -> Not connected, exit 1"
else
	fail "cli: test-connection missing token -> Not connected, exit 1" \
		"exit $rc: $(cat "$TMP/out" "$TMP/err")"
fi
if cli --json --config "$TMP/missing.yaml" test-connection >"$TMP/out" 2>/dev/null; then
	fail "cli: test-connection --json missing token" "exit 0"
elif json_ok "$TMP/out" 'd["ok"] is False and [m["connected"] for m in d["members"]] == [True, True, False]
		and d["members"][2]["reason"]'; then
	pass "cli: test-connection --json missing token"
else
	fail "cli: test-connection --json missing token" "$(cat "$TMP/out")"
fi

# --- hash-pin --------------------------------------------------------------------------------

hash=$(printf '%s\n' "$TEST_USER_PIN" | cli hash-pin 2>"$TMP/err")
rc=$?
if [ $rc -eq 0 ] && printf '%s' "$hash" | grep -Eq '^pbkdf2-sha256\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'; then
	pass "cli: hash-pin from stdin"
else
	fail "cli: hash-pin from stdin" "exit $rc: $hash $(cat "$TMP/err")"
fi

hash2=$(printf '%s\n' "$TEST_USER_PIN" | cli hash-pin 2>/dev/null)
if [ -n "$hash2" ] && [ "$hash" != "$hash2" ]; then
	pass "cli: hash-pin salts each hash"
else
	fail "cli: hash-pin salts each hash"
fi

# The first slot gets a user_pin_hash (same indentation as its label).
sed "s|^  - label: v-m1\$|  - label: v-m1\n    user_pin_hash: \"$hash\"|" "$GOOD" >"$TMP/hashed.yaml"
out=$(cli check-config --config "$TMP/hashed.yaml" 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ "$out" = "$TMP/hashed.yaml: OK (1 backend, 2 slots)" ] &&
	grep -q user_pin_hash "$TMP/hashed.yaml"; then
	pass "cli: a config with hash-pin's user_pin_hash passes check-config"
else
	fail "cli: a config with hash-pin's user_pin_hash passes check-config" "exit $rc: $out"
fi
if cli --json --config "$TMP/hashed.yaml" slots >"$TMP/out" 2>/dev/null &&
	json_ok "$TMP/out" 'd["slots"][0]["user_pin_hash"] is True and d["slots"][1]["user_pin_hash"] is False'; then
	pass "cli: slots --json shows which slots have a PIN hash"
else
	fail "cli: slots --json shows which slots have a PIN hash"
fi

# A damaged hash is refused.
sed "s|^  - label: v-m1\$|  - label: v-m1\n    user_pin_hash: \"pbkdf2-sha256\$x\$y\"|" "$GOOD" >"$TMP/badhash.yaml"
if cli check-config --config "$TMP/badhash.yaml" >/dev/null 2>&1; then
	fail "cli: check-config refuses a malformed user_pin_hash"
else
	pass "cli: check-config refuses a malformed user_pin_hash"
fi

out=$(P11P_HASH_PIN=$TEST_USER_PIN cli hash-pin --pin-source env:P11P_HASH_PIN 2>&1)
if printf '%s' "$out" | grep -q '^pbkdf2-sha256\$'; then
	pass "cli: hash-pin --pin-source env:"
else
	fail "cli: hash-pin --pin-source env:" "$out"
fi
out=$(cli hash-pin --pin-source "file:$TMP/pin.txt" 2>&1)
if printf '%s' "$out" | grep -q '^pbkdf2-sha256\$'; then
	pass "cli: hash-pin --pin-source file:"
else
	fail "cli: hash-pin --pin-source file:" "$out"
fi
cp "$TMP/pin.txt" "$TMP/open-pin.txt"
chmod 0644 "$TMP/open-pin.txt"
out=$(cli hash-pin --pin-source "file:$TMP/open-pin.txt" 2>&1)
rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'too open'; then
	pass "cli: hash-pin refuses a PIN file readable by others"
else
	fail "cli: hash-pin refuses a PIN file readable by others" "exit $rc: $out"
fi
out=$(printf '' | cli hash-pin 2>&1)
rc=$?
if [ $rc -eq 1 ] && ! printf '%s' "$out" | grep -q pbkdf2; then
	pass "cli: hash-pin refuses an empty PIN"
else
	fail "cli: hash-pin refuses an empty PIN" "exit $rc: $out"
fi
if P11P_HASH_PIN=$TEST_USER_PIN cli --json hash-pin --pin-source env:P11P_HASH_PIN \
	>"$TMP/out" 2>/dev/null && json_ok "$TMP/out" 'd["user_pin_hash"].startswith("pbkdf2-sha256$")'; then
	pass "cli: hash-pin --json"
else
	fail "cli: hash-pin --json" "$(cat "$TMP/out")"
fi

# PINs on argv are refused, and the value is not echoed back.
for args in "hash-pin --pin 97531" "hash-pin --pin=97531" "--pin 97531 hash-pin" "hash-pin 97531" \
	"test-connection --pin 97531"; do
	# shellcheck disable=SC2086
	cli $args </dev/null >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ $rc -eq 2 ] && [ ! -s "$TMP/out" ] && ! grep -q 97531 "$TMP/err"; then
		pass "cli: PIN on argv refused: $args"
	else
		fail "cli: PIN on argv refused: $args" "exit $rc: $(cat "$TMP/out" "$TMP/err")"
	fi
done

# hash-pin on a terminal: asks twice without echo; a mismatch fails. (A pty
# from python3; the CLI runs directly, not under valgrind, as it needs the tty.)
tty_hash_pin() {
	python3 - "$CLI" "$@" <<'PY'
import os, pty, select, sys, time
cli, answers = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(cli, [cli, "hash-pin"])
out = b""
for a in answers:
    time.sleep(0.3)
    os.write(fd, a.encode() + b"\n")
end = time.time() + 30
while time.time() < end:
    if not select.select([fd], [], [], 0.5)[0]:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
PY
}
out=$(tty_hash_pin 24680 24680)
rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q 'Repeat PIN:' &&
	printf '%s' "$out" | grep -q 'pbkdf2-sha256\$' && ! printf '%s' "$out" | grep -q 24680; then
	pass "cli: hash-pin on a terminal (twice, no echo)"
else
	fail "cli: hash-pin on a terminal (twice, no echo)" "exit $rc: $out"
fi
out=$(tty_hash_pin 24680 13579)
rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'do not match' &&
	! printf '%s' "$out" | grep -q pbkdf2; then
	pass "cli: hash-pin on a terminal: mismatch refused"
else
	fail "cli: hash-pin on a terminal: mismatch refused" "exit $rc: $out"
fi

# JSON escaping of what a token reports: quote, backslash, tab, non-ASCII.
weird=$(printf 'a"b\\c\td\303\251')
softhsm2-util --init-token --free --label "$weird" --pin "$TEST_USER_PIN" \
	--so-pin "$TEST_SO_PIN" >/dev/null
{
	printf 'backends:\n  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
	cat <<'YAML'
slots:
  - label: "q\"uote"
    members:
      - backend: softhsm
        token_label: "a\"b\\c\td\u00e9"
YAML
} >"$TMP/weird.yaml"
if cli --json --config "$TMP/weird.yaml" slots >"$TMP/out" 2>"$TMP/err" &&
	json_ok "$TMP/out" 'd["slots"][0]["label"] == "q\"uote" and
		d["slots"][0]["members"][0]["token"]["label"] == "a\"b\\c\td\u00e9"'; then
	pass "cli: slots --json escapes token strings"
else
	fail "cli: slots --json escapes token strings" "$(cat "$TMP/out" "$TMP/err")"
fi

# --- one parser: getopt_long, global options anywhere -------------------------------------------

want="$GOOD: OK (1 backend, 2 slots)"
for form in "-c $GOOD check-config" "-c$GOOD check-config" "--config=$GOOD check-config" \
	"--config $GOOD check-config" "check-config -c$GOOD" "check-config --config=$GOOD"; do
	# shellcheck disable=SC2086
	out=$(P11PROXY_CONF=/nonexistent cli $form 2>&1)
	if [ "$out" = "$want" ]; then
		pass "cli: config option: $(echo "$form" | sed "s|$GOOD|FILE|")"
	else
		fail "cli: config option: $(echo "$form" | sed "s|$GOOD|FILE|")" "$out"
	fi
done
out=$(cli -c 2>&1)
rc=$?
[ $rc -eq 2 ] && printf '%s' "$out" | grep -q "option '-c' needs a value" &&
	pass "cli: -c without FILE is a usage error" || fail "cli: -c without FILE is a usage error" "$rc $out"
out=$(cli slots --json=yes 2>&1)
[ $? -eq 2 ] && pass "cli: --json takes no value" || fail "cli: --json takes no value" "$out"

# --- JSON errors: an object on stdout, the exit status of the error ---------------------------
cli --json slots --bogus >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && json_ok "$TMP/out" 'd["ok"] is False and d["exit"] == 2 and
		"--bogus" in d["error"] and d["command"] == "slots"' && grep -q -- --bogus "$TMP/err"; then
	pass "cli: --json usage error: JSON object on stdout, message on stderr, exit 2"
else
	fail "cli: --json usage error: JSON object on stdout, message on stderr, exit 2" \
		"exit $rc: $(cat "$TMP/out")"
fi
cli test-connection no-such-slot --json >"$TMP/out" 2>/dev/null
rc=$?
if [ $rc -eq 2 ] && json_ok "$TMP/out" 'd["ok"] is False and "no-such-slot" in d["error"]'; then
	pass "cli: --json after the command: unknown slot as JSON"
else
	fail "cli: --json after the command: unknown slot as JSON" "exit $rc: $(cat "$TMP/out")"
fi
cli --json -c "$TMP/nonexistent.yaml" slots >"$TMP/out" 2>/dev/null
rc=$?
if [ $rc -eq 1 ] && json_ok "$TMP/out" 'd["exit"] == 1 and "nonexistent.yaml" in d["error"]'; then
	pass "cli: --json: a configuration that cannot be loaded, as JSON (exit 1)"
else
	fail "cli: --json: a configuration that cannot be loaded, as JSON (exit 1)" "exit $rc: $(cat "$TMP/out")"
fi
cli --json frobnicate >"$TMP/out" 2>/dev/null
rc=$?
if [ $rc -eq 2 ] && json_ok "$TMP/out" '"frobnicate" in d["error"] and d["command"] is None'; then
	pass "cli: --json: unknown command as JSON"
else
	fail "cli: --json: unknown command as JSON" "exit $rc: $(cat "$TMP/out")"
fi
# Every command answers a bad option with a JSON error under --json.
for c in slots test-connection members health sync keys policy check-config hash-pin gen-fragment; do
	cli --json "$c" --no-such-option </dev/null >"$TMP/out" 2>/dev/null
	rc=$?
	if [ $rc -eq 2 ] && json_ok "$TMP/out" 'd["ok"] is False and d["exit"] == 2'; then
		pass "cli: --json $c: JSON usage error"
	else
		fail "cli: --json $c: JSON usage error" "exit $rc: $(cat "$TMP/out")"
	fi
done

# --- a slot by label, id or pkcs11: URI --------------------------------------------------------
cli slots --json >"$TMP/slots.json" 2>/dev/null
serial2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slots"][1]["serial"])' "$TMP/slots.json")
for spec in "pkcs11:token=v-m2" "pkcs11:serial=$serial2" \
	"pkcs11:token=v-m2;manufacturer=SoftHSM%20project;model=SoftHSM%20v2" 1 v-m2; do
	out=$(cli test-connection "$spec" 2>&1)
	if [ "$out" = "v-m2 member 1 m2 (softhsm, token_label=m2): Connected" ]; then
		pass "cli: test-connection SLOT as $spec"
	else
		fail "cli: test-connection SLOT as $spec" "$out"
	fi
done
cli test-connection "pkcs11:manufacturer=SoftHSM%20project" >/dev/null 2>"$TMP/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "matches 2 virtual slots" "$TMP/err"; then
	pass "cli: a URI matching two slots is refused (exit 2)"
else
	fail "cli: a URI matching two slots is refused (exit 2)" "exit $rc: $(cat "$TMP/err")"
fi
cli health "pkcs11:token=nope" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -eq 2 ] && grep -q "no virtual slot 'pkcs11:token=nope'" "$TMP/err" &&
	pass "cli: a URI matching no slot (exit 2)" || fail "cli: a URI matching no slot (exit 2)" "$rc"
if cli --json policy show "pkcs11:token=v-m1" >"$TMP/out" 2>/dev/null &&
	json_ok "$TMP/out" '[s["slot"] for s in d["slots"]] == ["v-m1"]'; then
	pass "cli: policy show takes a URI"
else
	fail "cli: policy show takes a URI" "$(cat "$TMP/out")"
fi

# --- help for every command and sub-command --------------------------------------------------
for c in slots test-connection members health sync keys policy check-config hash-pin gen-fragment; do
	a=$(cli "$c" --help 2>&1)
	b=$(cli help "$c" 2>&1)
	if [ "$a" = "$b" ] && printf '%s' "$a" | grep -q "^usage: p11proxy \[-c FILE\] \[--json\] $c "; then
		pass "cli: $c --help = help $c"
	else
		fail "cli: $c --help = help $c" "$a"
	fi
done
for args in "keys help" "members v-m1 help" "members help" "policy help" "sync help" "keys rotate --help" \
	"-h keys"; do
	# shellcheck disable=SC2086
	out=$(cli $args 2>&1)
	rc=$?
	c=$(echo "$args" | sed 's/^-h //; s/ .*//')
	if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q "^usage: p11proxy .* $c "; then
		pass "cli: help: $args"
	else
		fail "cli: help: $args" "exit $rc: $out"
	fi
done
cli members v-m1 help | grep -q 'add --name N --backend B SELECTOR' &&
	pass "cli: members help names the add options" || fail "cli: members help names the add options"

# --- bash completion ---------------------------------------------------------------------------
# complete WORDS...: COMPREPLY of the completion function for the command line WORDS (last: cur).
complete_words() {
	PATH=$BUILD:$PATH bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
		_p11proxy; printf "%s\n" "${COMPREPLY[@]}"' complete "$SRCDIR/tools/completion/p11proxy.bash" "$@"
}
[ "$(complete_words p11proxy te)" = test-connection ] &&
	pass "completion: command names" || fail "completion: command names" "$(complete_words p11proxy te)"
[ "$(complete_words p11proxy keys ro)" = rotate ] && pass "completion: keys actions" ||
	fail "completion: keys actions"
got=$(complete_words p11proxy -c "$GOOD" members "" | tr '\n' ' ')
[ "$got" = "v-m1 v-m2 help " ] && pass "completion: slot labels from the configuration" ||
	fail "completion: slot labels from the configuration" "$got"
complete_words p11proxy members v-m1 add --tok | grep -qx -- --token-label &&
	pass "completion: members add options" || fail "completion: members add options"
complete_words p11proxy keys rotate k1 --i | grep -qx -- --id &&
	pass "completion: keys rotate --id" || fail "completion: keys rotate --id"
