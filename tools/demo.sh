#!/usr/bin/env bash
# p11proxy demo (`make demo`): SoftHSM2 tokens in ./state/demo, a proxy.yaml
# with one virtual slot per token, then real clients through libproxy.so:
# list the slots, generate an EC key pair, sign a file, verify with openssl.
#   tools/demo.sh [BUILD_DIR]        (default: build)
# Idempotent: every run starts from a fresh ./state/demo.
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
MODULE=$BUILD/libproxy.so
CLI=$BUILD/p11proxy
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
STATE=$SRCDIR/state/demo

for f in "$MODULE" "$CLI"; do
	if [ ! -e "$f" ]; then
		echo "demo: $f is missing: run 'make' first" >&2
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

# run COMMAND...: prints the command, then runs it.
run() {
	printf '\n\033[1m$'
	printf ' %q' "$@"
	printf '\033[0m\n'
	"$@"
}

step() {
	printf '\n\033[1;34m== %s\033[0m\n' "$*"
}

step "Fresh state directory $STATE"
rm -rf "$STATE"
mkdir -p "$STATE/tokens"
chmod 0700 "$STATE"
cd "$STATE"

# The demo PINs live in the environment, never on a command line.
export DEMO_PIN=1234
DEMO_SO_PIN=5678

step "Two SoftHSM2 tokens (own softhsm2.conf)"
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

step "proxy.yaml: virtual slots 'demo' (token hsm-a) and 'demo-b' (token hsm-b)"
cat >proxy.yaml <<EOF
# p11proxy demo configuration (see proxy.yaml(5)).
backends:
  - name: softhsm
    module: $SOFTHSM_MODULE
slots:
  # No member PIN: the application's PIN is passed to the token.
  - label: demo
    members:
      - backend: softhsm
        token_label: hsm-a
  - label: demo-b
    members:
      - backend: softhsm
        token_label: hsm-b
EOF
cat proxy.yaml
export P11PROXY_CONF=$STATE/proxy.yaml

step "The admin CLI"
run "$CLI" check-config
run "$CLI" slots
run "$CLI" test-connection

step "pkcs11-tool through the proxy: the virtual slots"
run pkcs11-tool --module "$MODULE" --list-slots

step "Generate an EC P-256 key pair in virtual slot 'demo'"
run pkcs11-tool --module "$MODULE" --token-label demo --login --pin env:DEMO_PIN \
	--keypairgen --key-type EC:prime256v1 --id 01 --label demo-key

step "Sign a file through the proxy"
echo "Hello from p11proxy, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >message.txt
run cat message.txt
run openssl dgst -sha256 -binary -out message.sha256 message.txt
run pkcs11-tool --module "$MODULE" --token-label demo --login --pin env:DEMO_PIN \
	--sign --id 01 -m ECDSA --input-file message.sha256 --output-file message.sig \
	--signature-format openssl

step "Export the public key and verify the signature with openssl (no HSM involved)"
run pkcs11-tool --module "$MODULE" --token-label demo --read-object --type pubkey --id 01 \
	--output-file demo-key.der
run openssl pkey -pubin -inform DER -in demo-key.der -out demo-key.pem
run openssl dgst -sha256 -verify demo-key.pem -signature message.sig message.txt

step "Done"
cat <<EOF
State: $STATE (tokens, softhsm2.conf, proxy.yaml, message.txt, message.sig, demo-key.pem).
Try it yourself:
  export SOFTHSM2_CONF=$STATE/softhsm2.conf P11PROXY_CONF=$STATE/proxy.yaml
  pkcs11-tool --module $MODULE -L
  $CLI slots --json
EOF
