# Conformance: the battery (tests/progs/battery.c) prints a normalized
# transcript of ~550 PKCS#11 steps; through the proxy it must be identical to
# SoftHSM2's own. In valgrind mode only the proxied batteries run (the one-token
# proxy and the HA pair with call_timeout), under valgrind, and pass when they
# exit 0.
#
# The same battery also runs through an HA pair (two SoftHSM2 tokens behind the
# fault-injecting shim, tests/shim/shim.c): healthy, with call_timeout (calls
# run on worker threads over copies of their buffers), and with a failing
# member (m1 absent, m1 failing every call with CKR_DEVICE_ERROR, m2 failing so).

conf_battery=$BUILD/tests/battery

# conf_run NAME MODULE LABEL OUT: runs the battery, stderr beside OUT.
conf_run() {
	local name=$1 module=$2 label=$3 out=$4 rc=0
	run_prog "$conf_battery" "$module" "$label" "$TEST_USER_PIN" >"$out" 2>"$out.err" || rc=$?
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "exit $rc"
		grep -E ': NO$' "$out" | sed 's/^/    /'
		if grep -q '^==[0-9]*== [A-Z]' "$out.err"; then
			# valgrind: its first error (heap damage may make it abort later)
			grep -m 1 -A 11 '^==[0-9]*== [A-Z]' "$out.err" | sed 's/^/    /'
			echo "    ..."
			tail -n 3 "$out.err" | sed 's/^/    /'
		else
			tail -n 20 "$out.err" | sed 's/^/    /'
		fi
	fi
	return $rc
}

conf_main() {
	mk_tmp
	if [ ! -x "$conf_battery" ]; then
		fail "conformance: battery built" "$conf_battery missing (make tests)"
		return 0
	fi
	if ! softhsm_setup "$TMP" m1; then
		fail "conformance: softhsm setup" "softhsm2-util --init-token failed"
		return 0
	fi
	if [ "$MODE" != valgrind ]; then
		conf_run "conformance: battery on softhsm2" "$SOFTHSM_MODULE" m1 "$TMP/direct.txt"
	fi
	if [ ! -e "$PROXY_MODULE" ]; then
		fail "conformance: proxy == softhsm" "$PROXY_MODULE does not exist (proxy not built)"
		return 0
	fi
	# Virtual keys on (proxy_conf's state_dir), with write_back so that
	# C_SetAttributeValue and C_DestroyObject reach the token as they do
	# directly; the default policy (virtual updates) is 56-vkeys' matter.
	PROXY_POLICY="{write_back: true}" proxy_conf "$TMP/proxy.yaml" m1
	if [ "$MODE" = valgrind ]; then
		conf_run "conformance: battery through proxy (valgrind)" "$PROXY_MODULE" v-m1 \
			"$TMP/proxied.txt"
		conf_ha
		return 0
	fi
	conf_run "conformance: battery through proxy" "$PROXY_MODULE" v-m1 "$TMP/proxied.txt"
	conf_diff "conformance: proxy == softhsm" "$TMP/proxied.txt" proxy
	conf_ha
}

# conf_diff NAME OUT LABEL: OUT against the baseline (SoftHSM2 directly).
conf_diff() {
	local name=$1 out=$2 label=$3
	if diff -u --label softhsm2 --label "$label" "$TMP/direct.txt" "$out" >"$out.diff"; then
		pass "$name"
	else
		fail "$name" "$(grep -c '^[-+][^-+]' "$out.diff") differing lines"
		head -n 60 "$out.diff" | sed 's/^/    /'
	fi
}

# conf_ha_run NAME TAG HA_OPTIONS SHIM_RULES: the battery through slot "ha" over fresh
# tokens m1, m2 behind the shim, with the shim's control file holding SHIM_RULES; compared
# with the baseline (not in valgrind mode).
conf_ha_run() {
	local name=$1 tag=$2 opts=$3 rules=$4 dir=$TMP/$2
	mkdir -p "$dir/state"
	softhsm_setup "$dir" m1 m2 || {
		fail "$name" "softhsm setup"
		return 0
	}
	printf '%s' "$rules" >"$dir/control"
	{
		printf 'state_dir: %s\n' "$dir/state"
		printf 'backends:\n  - name: shim\n    module: %s\n' "$BUILD/tests/libshim.so"
		printf 'slots:\n  - label: ha\n    ha: { %s }\n' "$opts"
		printf '    policy: { write_back: true }\n    members:\n'
		printf '      - backend: shim\n        token_label: m1\n'
		printf '      - backend: shim\n        token_label: m2\n'
	} >"$dir/proxy.yaml"
	if [ "$MODE" = valgrind ]; then
		P11PROXY_CONF=$dir/proxy.yaml P11SHIM_MODULE=$SOFTHSM_MODULE \
			P11SHIM_CONTROL=$dir/control conf_run "$name (valgrind)" "$PROXY_MODULE" ha \
			"$dir/battery.txt"
		return 0
	fi
	P11PROXY_CONF=$dir/proxy.yaml P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$dir/control \
		conf_run "$name" "$PROXY_MODULE" ha "$dir/battery.txt" &&
		conf_diff "$name == softhsm" "$dir/battery.txt" "$tag"
}

# In valgrind mode only the pair with call_timeout runs (its calls go through the proxy's
# copies of the buffers); a battery under valgrind takes some 40 s.
conf_ha() {
	local ha="probe_interval: 100ms, single_member_keys: true" timeout=2s
	# Under valgrind an RSA key generation alone can take longer than that.
	[ "$MODE" = valgrind ] && timeout=60s
	[ "$MODE" = valgrind ] || conf_ha_run "conformance: battery through an HA pair" ha-pair \
		"$ha" ""
	conf_ha_run "conformance: battery through an HA pair with call_timeout" ha-timeout \
		"$ha, call_timeout: $timeout" ""
	[ "$MODE" = valgrind ] && return 0
	conf_ha_run "conformance: battery through an HA pair, m1 absent" ha-m1-absent "$ha" \
		"m1 absent"$'\n'
	conf_ha_run "conformance: battery through an HA pair, m1 failing (CKR_DEVICE_ERROR)" \
		ha-m1-fails "$ha" "m1 fail CKR_DEVICE_ERROR"$'\n'
	conf_ha_run "conformance: battery through an HA pair, m2 failing (CKR_DEVICE_ERROR)" \
		ha-m2-fails "$ha" "m2 fail CKR_DEVICE_ERROR"$'\n'
}

conf_main
