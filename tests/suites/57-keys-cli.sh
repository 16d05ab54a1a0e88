# Virtual keys from the CLI: `p11proxy sync` into the index, `keys ...`, `policy ...`,
# against real SoftHSM2 tokens (hermetic). The HSM side is checked with pkcs11-tool
# against SoftHSM2 directly.
mk_tmp
softhsm_setup "$TMP" ka kb || { fail "keys: softhsm setup"; return; }
if ! command -v jq >/dev/null 2>&1 || ! command -v pkcs11-tool >/dev/null 2>&1; then
	skip "keys: all" "jq or pkcs11-tool missing (tests/install-deps.sh installs them)"
	return
fi
export P11P_TEST_KEYS_PIN=$TEST_USER_PIN
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
	printf 'slots:\n'
	printf '  - label: va\n    members:\n'
	printf '      - backend: softhsm\n        token_label: ka\n        pin: env:P11P_TEST_KEYS_PIN\n'
	# An HA slot over ka and kb (keys on both members).
	printf '  - label: vha\n    members:\n'
	printf '      - backend: softhsm\n        token_label: ka\n        pin: env:P11P_TEST_KEYS_PIN\n'
	printf '      - backend: softhsm\n        token_label: kb\n        pin: env:P11P_TEST_KEYS_PIN\n'
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml
INDEX=$TMP/state/keys.db
# P11P_TEST_INDEX=pg (58-vkeys-pg): the store is a PostgreSQL database (proxy_conf's knob).
# The checks that read the SQLite file itself are skipped then, by name.
FILE_STORE=true
if [ "${P11P_TEST_INDEX:-}" = pg ]; then
	mkdir -p "$TMP/pgconf"
	proxy_conf "$TMP/pgconf/proxy.yaml" ka || { fail "keys: a PostgreSQL store"; return; }
	printf 'index: %s\n' "$PROXY_INDEX" >>"$TMP/proxy.yaml"
	export P11PROXY_CONF=$TMP/proxy.yaml
	INDEX=$PROXY_INDEX
	FILE_STORE=false
fi
OVERLAY=$TMP/state/slots/va.policy

# hsm TOKEN ARGS...: pkcs11-tool on SoftHSM2 directly, logged in.
hsm() {
	local token=$1
	shift
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$token" --login \
		--pin "$TEST_USER_PIN" "$@" 2>/dev/null
}
# hsm_objects TOKEN TYPE: pkcs11-tool's listing of that type as one line per object
# ("label=L id=I kind=HEADER usage=U"); its --label does not filter a listing.
hsm_objects() {
	hsm "$1" -O --type "$2" | awk '
		/Object;/ { if (seen) print line; seen = 1; line = ""; kind = $0 }
		/^ *label:/ { sub(/^ *label: */, ""); line = line "label=" $0 " " }
		/^ *ID:/ { sub(/^ *ID: */, ""); line = line "id=" $0 " " }
		/^ *Usage:/ { sub(/^ *Usage: */, ""); line = line "kind=" kind " usage=" $0 }
		END { if (seen) print line }'
}
# hsm_usage TOKEN TYPE LABEL: the usage flags of the first such object.
hsm_usage() {
	hsm_objects "$1" "$2" | grep "^label=$3 " | head -1 | sed 's/.*usage=//'
}
# hsm_count TOKEN TYPE LABEL: how many such objects.
hsm_count() {
	hsm_objects "$1" "$2" | grep -c "^label=$3 "
}
json() {
	jq -e "$2" "$1" >/dev/null 2>&1
}
# vid KEY: the virtual id KEY resolves to (keys show --json).
vid() {
	cli keys show "$@" --json 2>/dev/null | jq -r .vid
}

# Keys on token ka: an AES key, an EC pair; on ka and kb the same AES key identity "both".
hsm ka --keygen --key-type AES:32 --label k1 --id 01 >/dev/null
hsm ka --keygen --key-type AES:16 --label k2 --id 0a0b >/dev/null
hsm ka --keypair --key-type EC:prime256v1 --label ec1 --id 02 >/dev/null
hsm ka --keygen --key-type AES:32 --label both --id 0b0b >/dev/null
hsm kb --keygen --key-type AES:32 --label both --id 0b0b >/dev/null
[ "$(hsm_count ka secrkey k1)" = 1 ] || { fail "keys: creating test keys"; return; }

# --- sync ------------------------------------------------------------------------------------
expect_cli "sync: dry run reports what would be added" 0 \
	"slot va (dry run, nothing written): added 5, updated 0, missing 0, unchanged 0" sync va --dry-run
if { ! $FILE_STORE || [ ! -e "$INDEX" ]; } && cli keys list --json >"$TMP/l.json" 2>&1 && json "$TMP/l.json" '.count == 0'; then
	pass "sync: dry run wrote nothing"
else
	fail "sync: dry run wrote nothing" "$(cat "$TMP/l.json")"
fi
expect_cli "sync: first sync adds every key" 0 "slot va: added 5, updated 0, missing 0, unchanged 0" sync va
expect_cli "sync: second sync is all unchanged" 0 "slot va: added 0, updated 0, missing 0, unchanged 5" sync va
if cli sync va --json >"$TMP/s.json" 2>&1 &&
	json "$TMP/s.json" '.ok and (.slots[0] | .added == 0 and .unchanged == 5 and .written == false and
		.members[0].logged_in and .members[0].keys == 5)'; then
	pass "sync: --json counts and member listing"
else
	fail "sync: --json counts and member listing" "$(cat "$TMP/s.json")"
fi
if ! $FILE_STORE; then
	skip "sync: index is 0600" "the file's mode (P11P_TEST_INDEX=pg)"
elif [ "$(stat -c %a "$INDEX")" = 600 ]; then pass "sync: index is 0600"; else fail "sync: index is 0600"; fi

# --- list / show -----------------------------------------------------------------------------
expect_cli "keys list: table" 0 "secret  AES     k1 .* 01 .*edsvwu- active      scanned 20[0-9-]*T[0-9:]*Z 1$" keys list
if cli keys list --slot va --json >"$TMP/l.json" 2>&1 &&
	json "$TMP/l.json" '.count == 5 and ([.keys[] | select(.label == "ec1") | .class] | sort == ["private","public"])
		and ([.keys[] | select(.label == "k1")][0] | .perms == "edsvwu-" and .origin == "scanned"
		and .presence == [1] and .members == ["ka"] and .state == "active" and .id == "01" and .key_type == "AES")'; then
	pass "keys list --json: records with class, type, perms, presence"
else
	fail "keys list --json: records with class, type, perms, presence" "$(head -c 600 "$TMP/l.json")"
fi
K1=$(vid k1 --slot va)
expect_cli "keys show by virtual id" 0 "label        \"k1\"" keys show "$K1"
expect_cli "keys show by label" 0 "virtual id   $K1" keys show k1 --slot va
expect_cli "keys show by CKA_ID hex" 0 "virtual id   $K1" keys show 01 --slot va
expect_cli "keys show by pkcs11: URI" 0 "virtual id   $K1" keys show "pkcs11:token=va;object=k1;type=secret-key"
expect_cli "keys show: URI with id=" 0 "label        \"k2\"" keys show "pkcs11:id=%0a%0b;token=va"
expect_cli "keys show: ambiguous label lists the matches (exit 1)" 1 "'ec1' matches 2 keys" keys show ec1
expect_cli "keys show: ambiguity names both classes" 1 "public key \"ec1\"" keys show ec1
expect_cli "keys show: unknown key" 1 "no virtual key 'nope'" keys show nope
expect_cli "keys show: URI naming no object" 1 "names no object" keys show "pkcs11:token=va"

# --- permissions: virtual, and never overwritten by a scan -------------------------------------
expect_cli "keys deny k1 encrypt (virtual)" 0 "permissions now -dsvwu-" keys deny k1 encrypt --slot va
if [ "$(hsm_usage ka secrkey k1)" = "encrypt, decrypt, verify, wrap, unwrap" ]; then
	pass "keys deny without write_back leaves the HSM key alone"
else
	fail "keys deny without write_back leaves the HSM key alone" "$(hsm_usage ka secrkey k1)"
fi
expect_cli "sync: HSM permissions are not copied over a virtual change" 0 "unchanged 5" sync va
[ "$(cli keys show "$K1" --json | jq -r .perms)" = "-dsvwu-" ] &&
	pass "sync: virtual permissions kept (-dsvwu-)" ||
	fail "sync: virtual permissions kept (-dsvwu-)" "$(cli keys show "$K1" --json)"
expect_cli "keys allow k1 encrypt" 0 "permissions now edsvwu-" keys allow "$K1" encrypt
expect_cli "keys allow: nothing to change" 0 "permissions already" keys allow "$K1" encrypt
expect_cli "keys allow: an operation that does not apply to the class" 1 "does not apply to a public key" \
	keys allow "pkcs11:object=ec1;type=public;token=va" sign

# Two writers at once on the same record: both changes land (rev + retry).
cli keys deny "$K1" encrypt >"$TMP/p1" 2>&1 &
p1=$!
cli keys deny "$K1" wrap >"$TMP/p2" 2>&1 &
p2=$!
wait $p1
r1=$?
wait $p2
r2=$?
perms=$(cli keys show "$K1" --json | jq -r .perms)
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$perms" = "-dsv-u-" ]; then
	pass "keys deny: two processes at once, both changes land"
else
	fail "keys deny: two processes at once, both changes land" "rc $r1 $r2 perms $perms"
fi

# --- state ------------------------------------------------------------------------------------
expect_cli "keys deactivate" 0 "deactivated (virtually" keys deactivate "$K1"
[ "$(cli keys show "$K1" --json | jq -r .state)" = deactivated ] && [ "$(hsm_count ka secrkey k1)" = 1 ] &&
	pass "keys deactivate: record deactivated, HSM key still there" ||
	fail "keys deactivate: record deactivated, HSM key still there"
expect_cli "keys deactivate again: nothing to do" 0 "already deactivated" keys deactivate "$K1"
expect_cli "sync keeps a deactivated key deactivated" 0 "unchanged 5" sync va
expect_cli "keys activate" 0 "activated" keys activate "$K1"
[ "$(cli keys show "$K1" --json | jq -r .state)" = active ] && pass "keys activate: active again" ||
	fail "keys activate: active again"

# --- a key deleted from the HSM becomes missing ----------------------------------------------
K2=$(vid k2 --slot va)
hsm ka --delete-object --type secrkey --label k2 >/dev/null
expect_cli "sync: key deleted on the HSM becomes missing" 0 "missing 1, unchanged 4" sync va
[ "$(cli keys show "$K2" --json | jq -r '.state + " " + (.presence | length | tostring)')" = "missing 0" ] &&
	pass "sync: missing record has no presence" || fail "sync: missing record has no presence"
expect_cli "sync: still missing is unchanged" 0 "missing 0, unchanged 5" sync va
hsm ka --keygen --key-type AES:16 --label k2 --id 0a0b >/dev/null
expect_cli "sync: found again is an update" 0 "updated 1" sync va
[ "$(cli keys show "$K2" --json | jq -r .state)" = active ] && pass "sync: missing key back to active" ||
	fail "sync: missing key back to active"

# --- scan: owned vs all ------------------------------------------------------------------------
hsm ka --keygen --key-type AES:32 --label k3 --id 03 >/dev/null
expect_cli "policy set scan=owned" 0 "scan owned (from overlay" policy set va scan=owned
expect_cli "sync under scan: owned imports no new key" 0 "added 0, updated 0, missing 0, unchanged 5; 1 not imported" sync va
expect_cli "sync under scan: owned keeps the earlier imports managed" 0 "virtual id" keys show k1 --slot va
expect_cli "policy set scan=all" 0 "scan all" policy set va scan=all
expect_cli "sync under scan: all imports it" 0 "added 1" sync va

# --- policy ----------------------------------------------------------------------------------
expect_cli "policy show: from the configuration" 0 "slot vha: write_back false, scan all (from the configuration)" policy show vha
# With a store, the overlay lives there (issue 11): no file, one audit row per change.
if cli policy show va --json >"$TMP/p.json" 2>&1 &&
	json "$TMP/p.json" ".slots[0].source == \"overlay\" and .slots[0].overlay == \"$INDEX\""; then
	pass "policy show --json: the overlay is in the store"
else
	fail "policy show --json: the overlay is in the store" "$(cat "$TMP/p.json")"
fi
[ ! -e "$OVERLAY" ] && pass "policy: no overlay file beside a store" || fail "policy: no overlay file beside a store"
if cli audit --json --slot va >"$TMP/a.json" 2>&1 &&
	json "$TMP/a.json" '[.rows[] | select(.what == "policy") | [.from, .to]] == [["write_back=false scan=all (config)", "write_back=false scan=owned"], ["write_back=false scan=owned", "write_back=false scan=all"]]'; then
	pass "policy: each set is an audit row (from, to)"
else
	fail "policy: each set is an audit row (from, to)" "$(cat "$TMP/a.json")"
fi
# A damaged overlay, written behind the CLI's back (SQL on the store itself).
damaged_from=damaged
if $FILE_STORE; then
	sqlite3 "$INDEX" "UPDATE overlays SET text = 'write_back = true' || char(10) || 'scan = sometimes' || char(10) WHERE slot = 'va' AND kind = 'policy'"
	expect_cli "policy show: a damaged overlay is named with its line" 1 "store:va.policy:2: 'scan' must be all or owned" policy show va
	expect_cli "sync refuses a slot with a damaged overlay" 1 "store:va.policy:2:" sync va
	expect_cli "keys delete refuses under a damaged overlay" 1 "store:va.policy:2:" keys delete k3 --slot va
else
	skip "policy: a damaged overlay (show, sync, keys delete)" "SQL on the SQLite file (P11P_TEST_INDEX=pg)"
	damaged_from="write_back=false scan=all"
fi
expect_cli "policy reset" 0 "(from the configuration)" policy reset va
if cli audit --json --slot va >"$TMP/a.json" 2>&1 &&
	json "$TMP/a.json" "[.rows[] | select(.what == \"policy\")] | last | .from == \"$damaged_from\" and .to == \"write_back=false scan=all (config)\""; then
	pass "policy reset: an audit row"
else
	fail "policy reset: an audit row" "$(cat "$TMP/a.json")"
fi
expect_cli "audit --verify: the chain holds with policy rows" 0 "" audit --verify

# --- delete ----------------------------------------------------------------------------------
K3=$(vid k3 --slot va)
expect_cli "keys delete without write_back is virtual" 0 "deleted (virtually" keys delete "$K3"
[ "$(hsm_count ka secrkey k3)" = 1 ] && pass "keys delete (virtual): HSM key stays" ||
	fail "keys delete (virtual): HSM key stays"
expect_cli "keys list hides deleted keys" 0 "k2" keys list --slot va
if cli keys list --slot va >"$TMP/out" 2>&1 && ! grep -q " k3 " "$TMP/out" &&
	cli keys list --slot va --all | grep -q "k3 .* deleted"; then
	pass "keys list --all shows deleted keys"
else
	fail "keys list --all shows deleted keys"
fi
expect_cli "sync never re-imports a virtually deleted key" 0 "1 deleted virtually, left alone" sync va
expect_cli "policy set write_back=true" 0 "write_back true" policy set va write_back=true
expect_cli "keys deny with write_back changes the HSM key" 0 "on the HSM key" keys deny k2 --slot va encrypt wrap
if [ "$(hsm_usage ka secrkey k2)" = "decrypt, verify, unwrap" ]; then
	pass "keys deny write_back: HSM usage flags changed"
else
	fail "keys deny write_back: HSM usage flags changed" "$(hsm_usage ka secrkey k2)"
fi
expect_cli "keys delete with write_back" 0 "with the HSM key on every member" keys delete "$K2"
[ "$(hsm_count ka secrkey k2)" = 0 ] && pass "keys delete write_back: HSM key destroyed" ||
	fail "keys delete write_back: HSM key destroyed"
expect_cli "keys delete write_back: record removed" 1 "no virtual key" keys show "$K2"
cli policy reset va >/dev/null 2>&1

# --- rotate ----------------------------------------------------------------------------------
expect_cli "keys rotate (secret key)" 0 "rotated to" keys rotate "$K1"
NEW=$(cli keys show "$K1" --json | jq -r .next)
if [ "$(hsm_count ka secrkey k1)" = 2 ] &&
	cli keys show "$NEW" --json >"$TMP/n.json" 2>&1 &&
	json "$TMP/n.json" ".prev == \"$K1\" and .origin == \"created\" and .state == \"active\" and
		(.id | length) == 32 and .id != \"01\" and .label == \"k1\" and .perms == \"-dsv-u-\"" &&
	[ "$(cli keys show "$K1" --json | jq -r .perms)" = "-d-v---" ]; then
	pass "keys rotate: new HSM key, links both ways, old key decrypt+verify only"
else
	fail "keys rotate: new HSM key, links both ways, old key decrypt+verify only" \
		"$(cat "$TMP/n.json"; hsm_count ka secrkey k1)"
fi
new_id=$(jq -r .id "$TMP/n.json")
if hsm_objects ka secrkey | grep "^label=k1 id=$new_id " | grep -q "kind=Secret Key Object; AES length 32 "; then
	pass "keys rotate: same key type and size on the HSM"
else
	fail "keys rotate: same key type and size on the HSM"
fi
expect_cli "keys rotate: an old key is rotated once" 1 "already rotated" keys rotate "$K1"
expect_cli "keys rotate (EC key pair)" 0 "its new public key" keys rotate "pkcs11:object=ec1;type=private;token=va"
[ "$(hsm_count ka privkey ec1)" = 2 ] && [ "$(hsm_count ka pubkey ec1)" = 2 ] &&
	pass "keys rotate: new EC pair on the HSM" || fail "keys rotate: new EC pair on the HSM"
expect_cli "keys rotate: a public key is refused" 1 "rotate its private key" \
	keys rotate "pkcs11:object=ec1;type=public;token=va;id=%02"

# --- HA slot: presence over two members, rotate refused without single_member_keys ------------
expect_cli "sync: HA slot" 0 "slot vha: added" sync vha
[ "$(cli keys show both --slot vha --json | jq -c .presence)" = "[1,2]" ] &&
	pass "sync: presence bit per member" || fail "sync: presence bit per member"
expect_cli "keys rotate: a key on two members is refused" 1 "single_member_keys" keys rotate both --slot vha
hsm kb --delete-object --type secrkey --label both >/dev/null
expect_cli "sync: a key gone from one member is updated" 0 "updated 1" sync vha
[ "$(cli keys show both --slot vha --json | jq -c '[.presence, .state]')" = '[[1],"active"]' ] &&
	pass "sync: presence drops the member" || fail "sync: presence drops the member"

# --- the permission table (lib/vkeys/model.h): what applies to which class --------------------
# A public key carries CKA_DERIVE but no mechanism derives from one: never a permission.
hsm ka --keypair --key-type EC:prime256v1 --label ecd --id 05 --usage-derive >/dev/null
# A private key without its public key on the HSM: rotate makes the public half itself.
hsm ka --keypair --key-type EC:prime256v1 --label ecr --id 06 --usage-derive >/dev/null
hsm ka --delete-object --type pubkey --label ecr >/dev/null
expect_cli "sync: EC pairs with derive set on both halves" 0 "added 3" sync va
if cli keys list --slot va --json >"$TMP/d.json" 2>&1 &&
	json "$TMP/d.json" '[.keys[] | select(.label == "ecd")] |
		(map(select(.class == "private"))[0] | .perms == "-ds--uk" and
			.permissions == ["decrypt","sign","unwrap","derive"]) and
		(map(select(.class == "public"))[0] | .perms == "e--vw--" and
			.permissions == ["encrypt","verify","wrap"])'; then
	pass "sync: a public key's CKA_DERIVE is not recorded as a permission"
else
	fail "sync: a public key's CKA_DERIVE is not recorded as a permission" \
		"$(jq -c '[.keys[] | select(.label == "ecd") | [.class, .perms]]' "$TMP/d.json")"
fi
expect_cli "keys allow: derive does not apply to a public key" 1 \
	"'derive' does not apply to a public key" keys allow "pkcs11:object=ecd;type=public;token=va" derive
expect_cli "keys allow all: a public key gets what applies to it" 0 "permissions already e--vw--" \
	keys allow "pkcs11:object=ecd;type=public;token=va" all
expect_cli "keys deny derive: applies to a private key" 0 "permissions now -ds--u-" \
	keys deny "pkcs11:object=ecd;type=private;token=va" derive
expect_cli "keys rotate: a private key with no public key" 0 "its new public key" \
	keys rotate "pkcs11:object=ecr;type=private;token=va"
# The new public key's record and HSM key get the same permissions: the private key's public half.
if cli keys list --slot va --json >"$TMP/r.json" 2>&1 &&
	json "$TMP/r.json" '[.keys[] | select(.label == "ecr" and .class == "public")] |
		length == 1 and .[0].perms == "e--vw--" and .[0].origin == "created"' &&
	[ "$(hsm_usage ka pubkey ecr)" = "encrypt, verify, wrap" ]; then
	pass "keys rotate: the new public key's record matches its HSM key (e--vw--)"
else
	fail "keys rotate: the new public key's record matches its HSM key (e--vw--)" \
		"$(jq -c '[.keys[] | select(.label == "ecr") | [.class, .perms]]' "$TMP/r.json"); HSM: $(hsm_usage ka pubkey ecr)"
fi

# --- usage errors (exit 2) -------------------------------------------------------------------
expect_cli "usage: keys without action" 2 "no action" keys
expect_cli "usage: keys unknown action" 2 "unknown action 'frob'" keys frob
expect_cli "usage: keys show without KEY" 2 "needs a KEY" keys show
expect_cli "usage: keys allow without OPERATION" 2 "needs at least one OPERATION" keys allow k1
expect_cli "usage: keys deny unknown operation" 2 "unknown operation 'fly'" keys deny k1 fly
expect_cli "usage: keys --slot unknown" 2 "no virtual slot 'nope'" keys list --slot nope
expect_cli "usage: sync unknown option" 2 "unknown option '--bogus'" sync --bogus
expect_cli "usage: sync unknown slot" 2 "no virtual slot 'nope'" sync nope
expect_cli "usage: policy set bad setting" 2 "expected write_back=true|false" policy set va color=blue
expect_cli "usage: policy set nothing" 2 "set needs" policy set va
expect_cli "usage: policy unknown action" 2 "unknown action" policy frob

# --- --json on every change, ISO 8601 times, rotate's CKA_ID ---------------------------------
hsm ka --keygen --key-type AES:16 --label kj --id 07 >/dev/null
cli sync va >/dev/null 2>&1
KJ=$(vid kj --slot va)
if cli keys show "$KJ" --json >"$TMP/j.json" 2>&1 &&
	json "$TMP/j.json" '(.created | test("^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")) and
		(.updated | test("Z$"))' &&
	cli keys show "$KJ" | grep -Eq '^created      20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'; then
	pass "keys show: times in ISO 8601 UTC (text and JSON)"
else
	fail "keys show: times in ISO 8601 UTC (text and JSON)" "$(cat "$TMP/j.json")"
fi
for args in "deny $KJ encrypt" "allow $KJ encrypt" "deactivate $KJ" "activate $KJ"; do
	act=${args%% *}
	# shellcheck disable=SC2086
	if cli keys $args --json >"$TMP/c.json" 2>"$TMP/c.err" &&
		json "$TMP/c.json" ".action == \"$act\" and .vid == \"$KJ\" and .changed == true and
			.key.vid == \"$KJ\" and (.message | type) == \"string\""; then
		pass "keys $act --json: one JSON answer with the record"
	else
		fail "keys $act --json: one JSON answer with the record" "$(cat "$TMP/c.json" "$TMP/c.err")"
	fi
done
if cli keys activate "$KJ" --json >"$TMP/c.json" 2>&1 && json "$TMP/c.json" '.changed == false'; then
	pass "keys activate --json: nothing to change is changed=false"
else
	fail "keys activate --json: nothing to change is changed=false" "$(cat "$TMP/c.json")"
fi
cli keys show nope --json >"$TMP/c.json" 2>/dev/null
rc=$?
if [ $rc -eq 1 ] && json "$TMP/c.json" '.ok == false and .exit == 1 and (.error | test("no virtual key"))'; then
	pass "keys show --json: an unknown key is a JSON error (exit 1)"
else
	fail "keys show --json: an unknown key is a JSON error (exit 1)" "exit $rc $(cat "$TMP/c.json")"
fi
if cli policy set va scan=owned --json >"$TMP/p.json" 2>&1 &&
	json "$TMP/p.json" '.ok and .slots[0].scan == "owned" and .slots[0].source == "overlay"' &&
	cli --json policy reset va >"$TMP/p.json" 2>&1 &&
	json "$TMP/p.json" '.ok and .slots[0].source == "config"'; then
	pass "policy set / reset --json"
else
	fail "policy set / reset --json" "$(cat "$TMP/p.json")"
fi
cli policy set va color=blue --json >"$TMP/p.json" 2>/dev/null
[ $? -eq 2 ] && json "$TMP/p.json" '.ok == false and .exit == 2' &&
	pass "policy set --json: usage error as JSON" || fail "policy set --json: usage error as JSON"

# A key with a 1-byte CKA_ID rotates to a new key with 16 random bytes; --id sets it.
if cli keys rotate "$KJ" --json >"$TMP/r.json" 2>&1 &&
	json "$TMP/r.json" '.action == "rotate" and (.new.id | length) == 32 and .old.next == .new.vid'; then
	pass "keys rotate: a 1-byte CKA_ID becomes 16 random bytes (--json)"
else
	fail "keys rotate: a 1-byte CKA_ID becomes 16 random bytes (--json)" "$(cat "$TMP/r.json")"
fi
NEWJ=$(jq -r .new.vid "$TMP/r.json")
newid=$(jq -r .new.id "$TMP/r.json")
hsm_objects ka secrkey | grep -q "^label=kj id=$newid " &&
	pass "keys rotate: the HSM key has the 16-byte id" || fail "keys rotate: the HSM key has the 16-byte id"
expect_cli "keys rotate --id HEX" 0 "(id 0102abcd," keys rotate "$NEWJ" --id 0102ABCD
expect_cli "keys rotate --id: a taken id is refused" 1 "has that CKA_ID already" \
	keys rotate "$(cli keys show "$NEWJ" --json | jq -r .next)" --id 07
expect_cli "keys rotate --id: not hex (exit 2)" 2 "wants hex digits" keys rotate k1 --slot va --id xyz
expect_cli "keys --id goes with rotate (exit 2)" 2 "goes with rotate" keys show k1 --id 01
