# Virtual keys through libproxy.so (tests/progs/vkeytest.c) on real SoftHSM2
# tokens, each case in its own token and index:
#  - creation records, enforcement of every operation class, deactivation,
#    virtual permissions in C_GetAttributeValue and finds, a second process's
#    change seen by a running one (write_back false, scan all);
#  - C_SetAttributeValue / C_DestroyObject under write_back false and true,
#    each checked on the virtual key and on the HSM key (SoftHSM2 loaded
#    directly by a separate process);
#  - lazy import of keys made directly on the token: scan all imports them,
#    scan owned hides new ones and keeps the ones imported before.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).

VT=$BUILD/tests/vkeytest

# vk_run NAME ARGS...: runs vkeytest through run_prog; pass when it exits 0.
vk_run() {
	local name=$1 out
	shift
	out=$TMP/$(echo "$name" | tr -c 'a-z0-9' _).out
	if run_prog "$VT" "$@" >"$out" 2>&1; then
		pass "$name ($(grep -c '^ok ' "$out") checks)"
	else
		fail "$name" "$(grep -c '^FAIL' "$out") failed checks"
		grep -v '^ok ' "$out" | head -n 20 | sed 's/^/    /'
	fi
}

# hsm_is TOKEN LABEL CLASS ATTR EXPECTED: the HSM side, SoftHSM2 directly
# (EXPECTED: "count N" or "ATTR true|false").
hsm_is() {
	local out
	out=$("$VT" hsm "$SOFTHSM_MODULE" "$1" "$TEST_USER_PIN" "$2" "$3" "$4" 2>&1)
	case $out in *"$5"*) return 0 ;; esac
	echo "    hsm: $1 $2 $3: wanted '$5', got: $out"
	return 1
}

vk_main() {
	local d
	mk_tmp
	if [ ! -x "$VT" ]; then
		fail "vkeys: vkeytest built" "$VT missing (make tests)"
		return 0
	fi

	# Enforcement (default policy).
	d=$TMP/enforce
	mkdir -p "$d"
	softhsm_setup "$d" t1 || {
		fail "vkeys: softhsm setup" "softhsm2-util failed"
		return 0
	}
	proxy_conf "$d/proxy.yaml" t1
	vk_run "vkeys: records, enforcement, find, deactivate, second process" \
		enforce "$PROXY_MODULE" v-t1 "$TEST_USER_PIN" "$PROXY_INDEX"
	check "vkeys: a denied key still signs on the HSM (EC private key CKA_SIGN true)" \
		hsm_is t1 vk-ec private sign "sign true"

	# write_back false: updates and deletes stay virtual.
	d=$TMP/virtual
	mkdir -p "$d"
	softhsm_setup "$d" t2
	proxy_conf "$d/proxy.yaml" t2
	vk_run "vkeys: write_back false: set and destroy change the virtual key" \
		virtual "$PROXY_MODULE" v-t2 "$TEST_USER_PIN" "$PROXY_INDEX"
	check "vkeys: write_back false: CKA_SIGN still true on the HSM key" \
		hsm_is t2 wb-ec private sign "sign true"
	check "vkeys: write_back false: the destroyed key is still on the HSM" \
		hsm_is t2 wb-aes secret encrypt "count 1"
	check "vkeys: a public key's CKA_DERIVE stays true on the HSM (never a permission)" \
		hsm_is t2 pd-ec public derive "derive true"
	vk_run "vkeys: write_back false: a new process keeps the tombstone" \
		after "$PROXY_MODULE" v-t2 "$TEST_USER_PIN" "$PROXY_INDEX"

	# write_back true: the HSM key changes too.
	d=$TMP/writeback
	mkdir -p "$d"
	softhsm_setup "$d" t3
	PROXY_POLICY="{write_back: true}" proxy_conf "$d/proxy.yaml" t3
	vk_run "vkeys: write_back true: set and destroy reach the HSM key" \
		writeback "$PROXY_MODULE" v-t3 "$TEST_USER_PIN" "$PROXY_INDEX"
	check "vkeys: write_back true: CKA_SIGN false on the HSM key" \
		hsm_is t3 wb-ec-renamed private sign "sign false"
	check "vkeys: write_back true: the HSM key has the new label only" \
		hsm_is t3 wb-ec private sign "count 0"
	check "vkeys: write_back true: the destroyed key is gone from the HSM" \
		hsm_is t3 wb-aes secret encrypt "count 0"

	# Lazy import: scan all, then owned on the same index.
	d=$TMP/scan
	mkdir -p "$d"
	softhsm_setup "$d" t4
	vk_run "vkeys: keys made directly on the token" \
		mkkeys "$SOFTHSM_MODULE" t4 "$TEST_USER_PIN" ext
	proxy_conf "$d/proxy.yaml" t4
	vk_run "vkeys: scan all imports keys at first sight" \
		scan "$PROXY_MODULE" v-t4 "$TEST_USER_PIN" "$PROXY_INDEX" all
	vk_run "vkeys: more keys made directly on the token" \
		mkkeys "$SOFTHSM_MODULE" t4 "$TEST_USER_PIN" ext2
	PROXY_POLICY="{scan: owned}" proxy_conf "$d/proxy.yaml" t4
	vk_run "vkeys: scan owned hides new keys, keeps imported ones, records created ones" \
		scan "$PROXY_MODULE" v-t4 "$TEST_USER_PIN" "$PROXY_INDEX" owned

	# No state_dir: virtual keys are off; a bad explicit index fails C_Initialize.
	if [ "${P11P_TEST_INDEX:-}" = pg ]; then
		skip "vkeys: no state directory, explicit index that cannot open" \
			"file-store cases (P11P_TEST_INDEX=pg)"
		return 0
	fi
	d=$TMP/off
	mkdir -p "$d"
	softhsm_setup "$d" t5
	proxy_conf "$d/proxy.yaml" t5
	sed -i "s|^state_dir: .*|state_dir: $d/absent|" "$d/proxy.yaml"
	check "vkeys: no state directory: keys pass through, no index written" \
		run_prog "$VT" mkkeys "$PROXY_MODULE" v-t5 "$TEST_USER_PIN" off
	check "vkeys: no state directory: no index file" test ! -e "$d/absent/keys.db"
	echo "index: $d/nodir/keys.db" >>"$d/proxy.yaml"
	if "$VT" mkkeys "$PROXY_MODULE" v-t5 "$TEST_USER_PIN" off >"$d/err" 2>&1; then
		fail "vkeys: an explicit index that cannot open fails C_Initialize" "it initialized"
	elif grep -q "nodir/keys.db" "$d/err" && grep -q "C_Initialize: 0x5" "$d/err"; then
		pass "vkeys: an explicit index that cannot open fails C_Initialize with its message"
	else
		fail "vkeys: an explicit index that cannot open fails C_Initialize" "$(head -3 "$d/err")"
	fi
}

vk_main
