#!/usr/bin/env bash
# p11proxy demo (`make demo`): an HA virtual slot over two SoftHSM2 tokens, an application that
# keeps signing while one member fails and comes back, and the admin CLI along the way.
#
# The members are reached through the test shim (build/tests/libshim.so), a PKCS#11 module that
# wraps SoftHSM2 and fails a token's calls on command (its control file): the demo's stand-in
# for an HSM that goes away. Everything lives in ./state/demo, recreated on every run.
#   tools/demo.sh [BUILD_DIR]        (default: build; `make demo` builds what it needs)
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
MODULE=$BUILD/libproxy.so
CLI=$BUILD/p11proxy
SHIM=$BUILD/tests/libshim.so
SIGNER=$BUILD/tests/signloop
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
STATE=$SRCDIR/state/demo
SIGN_SECONDS=${DEMO_SIGN_SECONDS:-16}

for f in "$MODULE" "$CLI" "$SHIM" "$SIGNER"; do
	if [ ! -e "$f" ]; then
		echo "demo: $f is missing: run 'make demo' (it builds the shim and the signer)" >&2
		exit 1
	fi
done
for tool in softhsm2-util pkcs11-tool openssl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "demo: $tool is missing: run 'make deps'" >&2
		exit 1
	fi
done
if [ ! -e "$SOFTHSM_MODULE" ]; then
	echo "demo: $SOFTHSM_MODULE is missing (softhsm2 package)" >&2
	exit 1
fi

# run COMMAND...: prints the command, then runs it; a failing command stops the demo.
run() {
	printf '\n\033[1m$'
	printf ' %q' "$@"
	printf '\033[0m\n'
	"$@"
}

# run_rc COMMAND...: the same for commands whose exit status is the point (health).
run_rc() {
	local rc=0
	run "$@" || rc=$?
	printf '\033[2m(exit status %d)\033[0m\n' "$rc"
}

step() {
	printf '\n\033[1;34m== %s\033[0m\n' "$*"
}

# shim RULES: rewrites the shim's control file in one go (every process loading it follows).
shim() {
	printf '%s\n' "$1" >"$P11SHIM_CONTROL.tmp"
	mv "$P11SHIM_CONTROL.tmp" "$P11SHIM_CONTROL"
	printf '\n\033[1;31m>> shim control file: %s\033[0m\n' "${1:-(empty: every token healthy)}"
}

SIGNER_PID=
cleanup() {
	[ -n "$SIGNER_PID" ] && kill "$SIGNER_PID" 2>/dev/null
	return 0
}
trap cleanup EXIT

step "Fresh state directory $STATE"
rm -rf "$STATE"
mkdir -p "$STATE/tokens" "$STATE/var"
chmod 0700 "$STATE" "$STATE/var"
cd "$STATE"

# The demo PIN lives in the environment, never on a command line.
export DEMO_PIN=1234
DEMO_SO_PIN=5678

step "Two SoftHSM2 tokens, hsm-a and hsm-b (own softhsm2.conf)"
cat >softhsm2.conf <<EOF
directories.tokendir = $STATE/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF=$STATE/softhsm2.conf
for label in hsm-a hsm-b; do
	# softhsm2-util has no PIN-from-environment option; this is a throw-away token.
	softhsm2-util --init-token --free --label "$label" --pin "$DEMO_PIN" \
		--so-pin "$DEMO_SO_PIN" >/dev/null
	echo "token $label initialised"
done
# Key replication copies new keys to every member, wrapped under an AES key that all the
# members hold (in production: the HSM vendor's key cloning or a key ceremony).
head -c 32 /dev/urandom >repl.key
for label in hsm-a hsm-b; do
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$label" --login --pin env:DEMO_PIN \
		--write-object repl.key --type secrkey --key-type AES:32 --label repl --usage-wrap \
		>/dev/null 2>&1
done
rm -f repl.key
echo "replication key 'repl' (the same AES-256 key) on both tokens"

step "proxy.yaml: virtual slot 'demo' = members hsm-a, then hsm-b, through the shim"
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$STATE/shim.control
: >"$P11SHIM_CONTROL"
cat >proxy.yaml <<EOF
# p11proxy demo configuration (see proxy.yaml(5)).
state_dir: $STATE/var
backends:
  - name: shim          # SoftHSM2 behind the fault-injecting test shim
    module: $SHIM
slots:
  - label: demo
    ha:
      mode: failover            # new sessions go to the first healthy member
      probe_interval: 500ms     # a failed member is probed again after this
      replication_key: repl     # new token keys are copied to every member
    members:                    # priority order
      - name: hsm-a
        backend: shim
        token_label: hsm-a
        pin: env:DEMO_PIN
      - name: hsm-b
        backend: shim
        token_label: hsm-b
        pin: env:DEMO_PIN
EOF
cat proxy.yaml
export P11PROXY_CONF=$STATE/proxy.yaml

step "The admin CLI: the configuration, the slot, its members and their health"
run "$CLI" check-config
run "$CLI" slots
run "$CLI" members demo
run_rc "$CLI" health demo

step "An EC P-256 key pair made through the proxy: created on hsm-a, copied to hsm-b"
run pkcs11-tool --module "$MODULE" --token-label demo --login --pin env:DEMO_PIN \
	--keypairgen --key-type EC:prime256v1 --id 01 --label demo-key --extractable
run_rc "$CLI" sync --check demo

step "An application signs every 50 ms for ${SIGN_SECONDS}s in one process, one session"
echo "(the module's messages, 'p11proxy: ...', are the application's stderr)"
"$SIGNER" "$MODULE" demo demo-key "$SIGN_SECONDS" &
SIGNER_PID=$!
sleep 3

step "hsm-a fails: every call on it answers CKR_DEVICE_ERROR"
shim "hsm-a fail CKR_DEVICE_ERROR"
sleep 2
run_rc "$CLI" health demo
run "$CLI" members demo
sleep 2

step "A new key pair while hsm-a is away: it can only go to hsm-b"
run pkcs11-tool --module "$MODULE" --token-label demo --login --pin env:DEMO_PIN \
	--keypairgen --key-type EC:prime256v1 --id 02 --label demo-key-2 --extractable

step "hsm-a comes back"
shim ""
sleep 1
run_rc "$CLI" health demo
run "$CLI" members demo
echo "(hsm-a misses the key made while it was away, until a process using the slot catches it up)"
run_rc "$CLI" sync --check demo

step "The signer ends: no signature failed while a member was away"
rc=0
wait "$SIGNER_PID" || rc=$?
SIGNER_PID=
if [ "$rc" -ne 0 ]; then
	echo "demo: the signer saw failures (exit $rc)" >&2
	exit 1
fi
echo "(its module saw hsm-a up again and copied the missing key to it)"
run_rc "$CLI" sync --check demo

step "A signature through the proxy, verified with openssl (no HSM involved)"
echo "Hello from p11proxy, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >message.txt
run openssl dgst -sha256 -binary -out message.sha256 message.txt
run pkcs11-tool --module "$MODULE" --token-label demo --login --pin env:DEMO_PIN \
	--sign --id 01 -m ECDSA --input-file message.sha256 --output-file message.sig \
	--signature-format openssl
run pkcs11-tool --module "$MODULE" --token-label demo --read-object --type pubkey --id 01 \
	--output-file demo-key.der
run openssl pkey -pubin -inform DER -in demo-key.der -out demo-key.pem
run openssl dgst -sha256 -verify demo-key.pem -signature message.sig message.txt

step "Done"
cat <<EOF
State: $STATE (tokens, softhsm2.conf, proxy.yaml, shim.control, message.sig, demo-key.pem).
Try it yourself:
  export SOFTHSM2_CONF=$STATE/softhsm2.conf P11PROXY_CONF=$STATE/proxy.yaml
  export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$STATE/shim.control DEMO_PIN=1234
  echo 'hsm-b fail CKR_DEVICE_ERROR' > $STATE/shim.control; $CLI health
  $CLI members demo down hsm-a; $CLI members demo; $CLI members demo reset
  pkcs11-tool --module $MODULE -L
EOF
