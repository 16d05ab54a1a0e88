# Virtual PIN state (issue 10 item 6): wrong PINs the proxy checks itself (a member
# whose PIN is configured) show in the slot's token flags as a token shows its own,
# CKF_USER_PIN_COUNT_LOW, _FINAL_TRY, _LOCKED at pin_max_tries, shared by the
# processes of the host (<state_dir>/slots/<LABEL>.pin), reset by `p11proxy pin reset`.
mk_tmp
softhsm_setup "$TMP" m1 m2 || { fail "pinstate: softhsm setup"; return; }
printf '%s\n' "$TEST_USER_PIN" >"$TMP/m1.pin"
chmod 600 "$TMP/m1.pin"
PT=$BUILD/tests/pintest
# conf FILE STATE_DIR [EXTRA SLOT LINE]: slot v-m1 (member PIN configured), slot v-m2 (none).
conf() {
	{
		printf 'backends:\n  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
		printf 'slots:\n  - label: v-m1\n'
		[ -n "${3:-}" ] && printf '    %s\n' "$3"
		printf '    members:\n      - backend: softhsm\n        token_label: m1\n'
		printf '        pin: file:%s\n' "$TMP/m1.pin"
		printf '  - label: v-m2\n    members:\n      - backend: softhsm\n        token_label: m2\n'
		printf 'state_dir: %s\n' "$2"
	} >"$1"
}
mkdir -m 700 "$TMP/state" # the package makes state_dir; the module makes slots/ in it
conf "$TMP/proxy.yaml" "$TMP/state" "pin_max_tries: 4"
export P11PROXY_CONF=$TMP/proxy.yaml
STATE=$TMP/state/slots/v-m1.pin

# pt ARGS...: one pintest run; its output (stdout) is the result.
pt() {
	run_prog "$PT" "$@" 2>>"$TMP/pt.err"
}
is() { # is NAME GOT WANT
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', expected '$3'"; fi
}

# One process: COUNT_LOW after one wrong PIN, cleared by a good login, FINAL_TRY with
# one try left, LOCKED at the limit, CKR_PIN_LOCKED for the right PIN too.
check "pinstate: wrong PINs show in the flags, locked at pin_max_tries" \
	run_prog "$PT" sequence "$PROXY_MODULE" v-m1 "$TEST_USER_PIN" 4
# Another process sees the same state.
is "pinstate: a second process sees the slot locked" "$(pt flags "$PROXY_MODULE" v-m1)" locked
is "pinstate: a second process gets CKR_PIN_LOCKED for the right PIN" \
	"$(pt login "$PROXY_MODULE" v-m1 "$TEST_USER_PIN")" "CKR_PIN_LOCKED locked"
grep -q 'p11proxy pin reset v-m1' "$TMP/pt.err" &&
	pass "pinstate: the refusal names the reset command" ||
	fail "pinstate: the refusal names the reset command" "$(cat "$TMP/pt.err")"

# The file: counts only, 0600.
is "pinstate: the state file holds a count only" "$(cat "$STATE" 2>&1)" "user_failures 4"
is "pinstate: the state file is 0600" "$(stat -c %a "$STATE" 2>&1)" 600
grep -q "$TEST_USER_PIN\|wrong-pin" "$STATE" && fail "pinstate: no PIN in the state file"

# The CLI: status, reset.
out=$(run_prog "$CLI" --json pin status v-m1 2>&1)
echo "$out" | jq -e '.slots[0] | .locked and .user_failures == 4 and .pin_max_tries == 4
	and .checked_by_proxy and .flags == ["user-pin-locked"]' >/dev/null &&
	pass "pinstate: pin status --json" || fail "pinstate: pin status --json" "$out"
out=$(run_prog "$CLI" pin reset v-m1 2>&1)
is "pinstate: pin reset" "$out" "slot v-m1: 0 wrong PINs of 4"
is "pinstate: reset clears the flags" "$(pt flags "$PROXY_MODULE" v-m1)" none
is "pinstate: the right PIN logs in after a reset" \
	"$(pt login "$PROXY_MODULE" v-m1 "$TEST_USER_PIN")" "CKR_OK none"
out=$(run_prog "$CLI" pin reset 2>&1)
[ $? = 2 ] && pass "pinstate: pin reset needs a SLOT" || fail "pinstate: pin reset needs a SLOT" "$out"

# A running process follows what others do (its cached view included): a wrong PIN
# from another process, then again once its cache is older than the stamp's granularity.
out=$(pt watch "$PROXY_MODULE" v-m1 "$PT login $PROXY_MODULE v-m1 wrong >/dev/null 2>&1" |
	tr '\n' ' ')
is "pinstate: a running process sees other processes' wrong PINs" "$out" \
	"none count-low count-low count-low count-low "
is "pinstate: wrong PINs from several processes add up" \
	"$(pt login "$PROXY_MODULE" v-m1 wrong)" "CKR_PIN_INCORRECT count-low,final-try"
is "pinstate: a good login clears the count for every process" \
	"$(pt login "$PROXY_MODULE" v-m1 "$TEST_USER_PIN"; pt flags "$PROXY_MODULE" v-m1)" \
	"CKR_OK none
none"

# pkcs11-tool: a wrong PIN, then the flags as `pkcs11-tool -T` shows them.
# (A real client: normal mode only, as in 60-clients.sh.)
if [ "$MODE" != normal ]; then
	skip "pinstate: pkcs11-tool" "real clients run in normal mode only (mode $MODE)"
elif command -v pkcs11-tool >/dev/null; then
	pkcs11-tool --module "$PROXY_MODULE" --token-label v-m1 --login --pin 0000 -O \
		>/dev/null 2>&1 && fail "pinstate: pkcs11-tool with a wrong PIN is refused"
	out=$(pkcs11-tool --module "$PROXY_MODULE" -T 2>&1)
	echo "$out" | grep -A6 'token label *: v-m1' | grep -q 'token flags.*user PIN count low' &&
		pass "pinstate: pkcs11-tool -T shows user PIN count low" ||
		fail "pinstate: pkcs11-tool -T shows user PIN count low" "$out"
	run_prog "$CLI" pin reset v-m1 >/dev/null
else
	skip "pinstate: pkcs11-tool" "not installed"
fi

# A slot whose member checks its own PIN: nothing counted by the proxy.
pt login "$PROXY_MODULE" v-m2 wrong >/dev/null
[ ! -e "$TMP/state/slots/v-m2.pin" ] && pass "pinstate: no state for a slot the member checks" ||
	fail "pinstate: no state for a slot the member checks"
out=$(run_prog "$CLI" --json pin status v-m2 2>&1)
echo "$out" | jq -e '.slots[0] | (.checked_by_proxy | not) and .pin_max_tries == 10' \
	>/dev/null && pass "pinstate: default pin_max_tries 10" ||
	fail "pinstate: default pin_max_tries 10" "$out"

# A damaged state file refuses every PIN (and says how to repair it); reset repairs it.
printf 'garbage\n' >"$STATE"
: >"$TMP/pt.err"
is "pinstate: a damaged state file refuses the right PIN" \
	"$(pt login "$PROXY_MODULE" v-m1 "$TEST_USER_PIN")" "CKR_PIN_LOCKED locked"
grep -q 'p11proxy pin reset v-m1' "$TMP/pt.err" &&
	pass "pinstate: the damaged file's message names the reset" ||
	fail "pinstate: the damaged file's message names the reset" "$(cat "$TMP/pt.err")"
run_prog "$CLI" pin status v-m1 >/dev/null 2>&1 && fail "pinstate: pin status fails on a damaged file"
run_prog "$CLI" pin reset v-m1 >/dev/null 2>&1
is "pinstate: reset repairs a damaged state file" \
	"$(pt login "$PROXY_MODULE" v-m1 "$TEST_USER_PIN")" "CKR_OK none"

# No usable state_dir: wrong PINs are still counted and enforced, in the process.
: >"$TMP/notadir"
conf "$TMP/local.yaml" "$TMP/notadir/state" "pin_max_tries: 3"
P11PROXY_CONF=$TMP/local.yaml check "pinstate: counted in the process without a state file" \
	run_prog "$PT" sequence "$PROXY_MODULE" v-m1 "$TEST_USER_PIN" 3

# The setting.
conf "$TMP/bad.yaml" "$TMP/state" "pin_max_tries: 0"
out=$(run_prog "$CLI" check-config "$TMP/bad.yaml" 2>&1)
echo "$out" | grep -q "bad.yaml:6:20: 'pin_max_tries' must be between 1 and 1000" &&
	pass "pinstate: pin_max_tries 0 is refused" || fail "pinstate: pin_max_tries 0 is refused" "$out"

# C_InitPIN (the SO sets the user PIN) resets the virtual PIN state, as `pin reset` does.
for _ in 1 2 3 4; do pt login "$PROXY_MODULE" v-m1 wrong >/dev/null; done
is "pinstate: locked again before C_InitPIN" "$(pt flags "$PROXY_MODULE" v-m1)" locked
is "pinstate: C_InitPIN by the SO clears the flags" \
	"$(pt initpin "$PROXY_MODULE" v-m1 "$TEST_SO_PIN" "$TEST_USER_PIN")" "CKR_OK none"
is "pinstate: C_InitPIN rewrote the state file" "$(cat "$STATE" 2>&1)" "user_failures 0"
is "pinstate: the user logs in after C_InitPIN" \
	"$(pt login "$PROXY_MODULE" v-m1 "$TEST_USER_PIN")" "CKR_OK none"
# A damaged state file too.
printf 'garbage\n' >"$STATE"
is "pinstate: C_InitPIN repairs a damaged state file" \
	"$(pt initpin "$PROXY_MODULE" v-m1 "$TEST_SO_PIN" "$TEST_USER_PIN"; cat "$STATE")" \
	"CKR_OK none
user_failures 0"

# On a slot of two members C_InitPIN reaches both tokens (checked on SoftHSM2 directly).
{
	printf 'backends:\n  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
	printf 'slots:\n  - label: v-ha\n    pin_max_tries: 4\n    members:\n'
	printf '      - backend: softhsm\n        token_label: %s\n' m1 m2
	printf 'state_dir: %s\n' "$TMP/state"
} >"$TMP/ha.yaml"
token_login() { # token_login TOKEN PIN: a user login on SoftHSM2 itself
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$2" -O \
		>/dev/null 2>&1
}
if command -v pkcs11-tool >/dev/null; then
	out=$(P11PROXY_CONF=$TMP/ha.yaml pt initpin "$PROXY_MODULE" v-ha "$TEST_SO_PIN" 24681357)
	if [ "$out" = "CKR_OK none" ] && token_login m1 24681357 && token_login m2 24681357; then
		pass "pinstate: C_InitPIN through a slot of two members sets the PIN on both"
	else
		fail "pinstate: C_InitPIN through a slot of two members sets the PIN on both" \
			"$out; $(tail -n 5 "$TMP/pt.err")"
	fi
	# Back to the PIN the rest of the tests use.
	P11PROXY_CONF=$TMP/ha.yaml pt initpin "$PROXY_MODULE" v-ha "$TEST_SO_PIN" "$TEST_USER_PIN" \
		>/dev/null
	token_login m2 "$TEST_USER_PIN" && pass "pinstate: and back on both" ||
		fail "pinstate: and back on both"
else
	skip "pinstate: C_InitPIN on a slot of two members" "no pkcs11-tool"
fi
