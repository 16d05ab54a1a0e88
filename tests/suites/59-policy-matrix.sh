# The key-management policy matrix (issue 4): write_back false|true x scan all|owned, each
# with create, permission change, deactivate, rotate and delete, checked on the virtual
# key (what the module lets an application do, and `p11proxy keys show`) and on the HSM
# key (pkcs11-tool against SoftHSM2 directly). Updates of other attributes through
# C_SetAttributeValue and C_DestroyObject under both policies are in 56-vkeys.
if [ "$MODE" = valgrind ]; then
	skip "matrix: all" "normal and asan only (56-vkeys and 57-keys-cli cover these paths under valgrind)"
	return
fi
if ! command -v jq >/dev/null 2>&1 || ! command -v pkcs11-tool >/dev/null 2>&1; then
	skip "matrix: all" "jq or pkcs11-tool missing (tests/install-deps.sh installs them)"
	return
fi
mk_tmp
VT=$BUILD/tests/vkeytest
export P11P_MATRIX_PIN=$TEST_USER_PIN
NOT_PERMITTED=0x68 # CKR_KEY_FUNCTION_NOT_PERMITTED
DEACTIVATED=0xd0310001 # P11PROXY_CKR_KEY_DEACTIVATED

# use LABEL IDHEX OP: what the module answers to OP's *Init with that key ("rv 0x...").
use() {
	"$VT" use "$PROXY_MODULE" vm "$TEST_USER_PIN" "$@" 2>/dev/null
}
# The module follows another process's index change within 100 ms.
settle() {
	sleep 0.3
}
# hsm_usage TOKEN IDHEX: the usage flags of the HSM's secret key with that id.
hsm_usage() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$TEST_USER_PIN" \
		-O --type secrkey --id "$2" 2>/dev/null | sed -n 's/^ *Usage: *//p' | head -1
}
# hsm_count TOKEN LABEL: how many secret keys with that label the HSM holds.
hsm_count() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$TEST_USER_PIN" \
		-O --type secrkey 2>/dev/null | grep -c "label: *$2\$"
}
# is NAME WANT GOT: pass when equal.
is() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "wanted '$2', got '$3'"; fi
}

matrix_case() {
	local wb=$1 scan=$2 tok=$3 d=$TMP/$3 vid new newid usage name
	name="matrix wb=$wb scan=$scan"
	mkdir -p "$d"
	softhsm_setup "$d" "$tok" >/dev/null || {
		fail "$name: softhsm setup"
		return
	}
	{
		printf 'state_dir: %s\n' "$d/state"
		printf 'backends:\n  - name: softhsm\n    module: %s\n' "$SOFTHSM_MODULE"
		printf 'slots:\n  - label: vm\n    policy: { write_back: %s, scan: %s }\n' "$wb" "$scan"
		printf '    members:\n      - backend: softhsm\n        token_label: %s\n' "$tok"
		printf '        pin: env:P11P_MATRIX_PIN\n'
	} >"$d/proxy.yaml"
	mkdir -p "$d/state"
	export P11PROXY_CONF=$d/proxy.yaml SOFTHSM2_CONF=$d/softhsm2.conf

	# create: in the HSM at once, recorded with origin created (under both scans)
	check "$name: create through the slot" "$VT" mkaes "$PROXY_MODULE" vm "$TEST_USER_PIN" mx 0a
	"$CLI" keys show mx --json >"$d/k.json" 2>&1
	is "$name: create: virtual key created, active, e+d" "created active true" \
		"$(jq -r '[.origin, .state, (.perms | test("^ed"))] | join(" ")' "$d/k.json")"
	is "$name: create: one HSM key" 1 "$(hsm_count "$tok" mx)"
	vid=$(jq -r .vid "$d/k.json")

	# permission change: the virtual key always; the HSM key only with write_back
	"$CLI" keys deny "$vid" encrypt >/dev/null 2>&1
	settle
	is "$name: deny encrypt: refused through the slot" "rv $NOT_PERMITTED" "$(use mx 0a encrypt)"
	is "$name: deny encrypt: decrypt still allowed" "rv 0x0" "$(use mx 0a decrypt)"
	usage=$(hsm_usage "$tok" 0a)
	if [ "$wb" = true ]; then
		case $usage in decrypt,*) pass "$name: deny encrypt: HSM key changed (write_back)" ;;
		*) fail "$name: deny encrypt: HSM key changed (write_back)" "usage '$usage'" ;; esac
	else
		case $usage in encrypt,*) pass "$name: deny encrypt: HSM key untouched" ;;
		*) fail "$name: deny encrypt: HSM key untouched" "usage '$usage'" ;; esac
	fi
	"$CLI" keys allow "$vid" encrypt >/dev/null 2>&1
	settle
	is "$name: allow encrypt: usable again" "rv 0x0" "$(use mx 0a encrypt)"

	# deactivate: virtual only, whatever the policy
	"$CLI" keys deactivate "$vid" >/dev/null 2>&1
	settle
	is "$name: deactivate: refused with the documented code" "rv $DEACTIVATED" \
		"$(use mx 0a decrypt)"
	case $(hsm_usage "$tok" 0a) in encrypt,*) pass "$name: deactivate: HSM key untouched" ;;
	*) fail "$name: deactivate: HSM key untouched" "$(hsm_usage "$tok" 0a)" ;; esac
	"$CLI" keys activate "$vid" >/dev/null 2>&1
	settle
	is "$name: activate: usable again" "rv 0x0" "$(use mx 0a encrypt)"

	# rotate: a new HSM key, linked; the old one decrypts but no longer encrypts
	"$CLI" keys rotate "$vid" >"$d/rot.out" 2>&1
	new=$("$CLI" keys show "$vid" --json 2>/dev/null | jq -r .next)
	newid=$("$CLI" keys show "$new" --json 2>/dev/null | jq -r .id)
	is "$name: rotate: two HSM keys labelled mx" 2 "$(hsm_count "$tok" mx)"
	is "$name: rotate: old key no longer encrypts" "rv $NOT_PERMITTED" "$(use mx 0a encrypt)"
	is "$name: rotate: old key still decrypts" "rv 0x0" "$(use mx 0a decrypt)"
	is "$name: rotate: new key encrypts" "rv 0x0" "$(use mx "$newid" encrypt)"

	# delete: the virtual key goes; the HSM key only with write_back
	"$CLI" keys delete "$vid" >/dev/null 2>&1
	settle
	is "$name: delete: gone through the slot" "rv none" "$(use mx 0a decrypt)"
	if [ "$wb" = true ]; then
		is "$name: delete: HSM key destroyed (write_back)" 1 "$(hsm_count "$tok" mx)"
	else
		is "$name: delete: HSM key kept" 2 "$(hsm_count "$tok" mx)"
	fi
	is "$name: delete: the new key still works" "rv 0x0" "$(use mx "$newid" decrypt)"
}

matrix_case false all mxa
matrix_case false owned mxb
matrix_case true all mxc
matrix_case true owned mxd
