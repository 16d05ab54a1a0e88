# The deployment that makes the virtual-key permissions a boundary (p11proxy(7), SECURITY):
# libproxy.so runs as its own user behind `p11-kit server`; the application, another user,
# reaches it through p11-kit-client.so and can read none of the configuration, PIN file,
# tokens or state. Checked: the application cannot read the PIN file or the configuration,
# cannot write the state directory or the index, cannot use the vendor library or libproxy.so
# itself; signing through p11-kit-client.so works; a key denied with `p11proxy keys deny` (run
# as the service user) is refused to it; a connection from another user is refused. Then the
# mechanisms p11-kit's RPC passes, measured with tests/progs/rpcmechs against what the proxy
# offers in-process (the table in docs/SECURITY.md).
#
# Root only (users are made and switched), normal mode only. The service user p11ptest is
# created when absent and removed again; the application runs as nobody:nogroup.
# TRUST_DEBUG=1 shows the server's stderr; TRUST_MECHS_OUT=FILE keeps the mechanism table.
[ "$MODE" = normal ] || { skip "trust" "normal mode only"; return 0; }
[ "$(id -u)" = 0 ] || { skip "trust" "needs root (creates a service user, switches users)"; return 0; }
CLIENT_MODULE=
for f in /usr/lib/*/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so; do
	[ -f "$f" ] && CLIENT_MODULE=$f && break
done
[ -n "$CLIENT_MODULE" ] || { skip "trust" "p11-kit-client.so not installed (p11-kit-modules; make deps)"; return 0; }
for tool in p11-kit pkcs11-tool softhsm2-util setpriv useradd userdel openssl; do
	command -v "$tool" >/dev/null 2>&1 || { skip "trust" "$tool not installed"; return 0; }
done
getent passwd nobody >/dev/null && getent group nogroup >/dev/null ||
	{ skip "trust" "no user nobody / group nogroup"; return 0; }

SVC=p11ptest
MADE_USER=
SERVER=
mk_tmp
cleanup() {
	[ -n "${TRUST_DEBUG:-}" ] && sed 's/^/    server: /' "$TMP/server.err"
	[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
	rm -rf "$TMP"
	[ -n "$MADE_USER" ] && userdel "$SVC" 2>/dev/null
	return 0
}
trap cleanup EXIT
if ! getent passwd "$SVC" >/dev/null; then
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin "$SVC" || { fail "trust: useradd $SVC"; return 0; }
	MADE_USER=1
fi

# Layout: $TMP/svc is the service's (0700: configuration, PIN file, tokens, state), $TMP/run
# holds the socket, $TMP/app is the application's. The programs are copied where both users
# can run them.
chmod 0711 "$TMP"
mkdir -p "$TMP/svc/state" "$TMP/run" "$TMP/app" "$TMP/bin"
cp "$PROXY_MODULE" "$CLI" "$BUILD/tests/rpcmechs" "$TMP/bin/"
chmod 0755 "$TMP/bin" "$TMP/bin"/*
softhsm_setup "$TMP/svc" hsm >/dev/null || { fail "trust: softhsm setup"; return 0; }
printf '%s\n' "$TEST_USER_PIN" >"$TMP/svc/member.pin"
chmod 0600 "$TMP/svc/member.pin"
# The application has its own PIN: the proxy checks it against user_pin_hash and logs in to the
# token with the member's PIN, which the application never learns.
APP_PIN=app-pin-4711
export APP_PIN
hash=$(P11PROXY_CONF=/nonexistent "$CLI" hash-pin --pin-source env:APP_PIN) ||
	{ fail "trust: hash-pin"; return 0; }
cat >"$TMP/svc/proxy.yaml" <<EOF
state_dir: $TMP/svc/state
backends:
  - name: softhsm
    module: $SOFTHSM_MODULE
slots:
  - label: v-trust
    user_pin_hash: "$hash"
    members:
      - backend: softhsm
        token_label: hsm
        pin: file:$TMP/svc/member.pin
EOF
chown -R "$SVC:$SVC" "$TMP/svc" "$TMP/run"
chmod 0700 "$TMP/svc" "$TMP/svc/state"
chmod 0711 "$TMP/run"
chown nobody:nogroup "$TMP/app"
chmod 0700 "$TMP/app"
SVC_ENV=(P11PROXY_CONF="$TMP/svc/proxy.yaml" SOFTHSM2_CONF="$TMP/svc/softhsm2.conf")

# as_svc / as_app COMMAND...: run as the service user, or as the application (nobody, a clean
# environment that names only the server's socket and the application's PIN).
as_svc() {
	setpriv --reuid "$SVC" --regid "$SVC" --clear-groups \
		env -i PATH="$PATH" HOME=/nonexistent "${SVC_ENV[@]}" "$@"
}
SOCK=$TMP/run/p11proxy.sock
as_app() {
	(cd "$TMP/app" && setpriv --reuid nobody --regid nogroup --clear-groups \
		env -i PATH="$PATH" HOME=/nonexistent P11_KIT_SERVER_ADDRESS="unix:path=$SOCK" \
		APP_PIN="$APP_PIN" "$@")
}

# The server: runs as the service user and exports the proxy's token. p11-kit 0.24 creates the
# socket after it has become that user, mode 0600 (its -u/-g options would chown it then, and
# fail): root then gives it to the application's group. -g also makes the server check every
# peer's primary group.
env "${SVC_ENV[@]}" p11-kit server -f --provider "$TMP/bin/libproxy.so" \
	--run-as-user "$SVC" --run-as-group "$SVC" -g nogroup -n "$SOCK" \
	"pkcs11:token=v-trust" >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER=$!
# Ready once it has printed the address (it does after binding the socket).
for _ in $(seq 50); do grep -q P11_KIT_SERVER_ADDRESS "$TMP/server.out" && break; sleep 0.1; done
if ! grep -q P11_KIT_SERVER_ADDRESS "$TMP/server.out" || ! kill -0 "$SERVER" 2>/dev/null; then
	fail "trust: p11-kit server started" "$(head -c 300 "$TMP/server.err")"
	return 0
fi
chgrp nogroup "$SOCK" && chmod 0660 "$SOCK"
pass "trust: p11-kit server started as $SVC"
# outcome NAME WANT(ok|fail) COMMAND...: the command must succeed (ok) or fail (fail).
outcome() {
	local name=$1 want=$2 rc=0
	shift 2
	"$@" >"$TMP/out" 2>&1 || rc=$?
	if { [ "$want" = ok ] && [ $rc -eq 0 ]; } || { [ "$want" = fail ] && [ $rc -ne 0 ]; }; then
		pass "$name"
	else
		fail "$name" "exit $rc: $(head -c 300 "$TMP/out" | tr '\n' ' ')"
	fi
}

# --- what the application's process cannot do ---
outcome "trust: the application cannot read the PIN file" fail as_app cat "$TMP/svc/member.pin"
outcome "trust: the application cannot read the configuration" fail \
	as_app cat "$TMP/svc/proxy.yaml"
outcome "trust: the application cannot write the state directory" fail \
	as_app touch "$TMP/svc/state/planted"
outcome "trust: the application cannot list the tokens' files" fail as_app ls "$TMP/svc/tokens"
outcome "trust: the application cannot load libproxy.so with the service's configuration" fail \
	as_app env P11PROXY_CONF="$TMP/svc/proxy.yaml" pkcs11-tool --module "$TMP/bin/libproxy.so" -L
# The vendor library itself, with the service's SoftHSM2 configuration: no token to be had.
as_app env SOFTHSM2_CONF="$TMP/svc/softhsm2.conf" pkcs11-tool --module "$SOFTHSM_MODULE" -T \
	>"$TMP/out" 2>&1
if grep -q "hsm" "$TMP/out"; then
	fail "trust: the application cannot reach the token through the vendor library" \
		"$(head -c 300 "$TMP/out")"
else
	pass "trust: the application cannot reach the token through the vendor library"
fi
outcome "trust: the application cannot run the CLI on the service's configuration" fail \
	as_app "$TMP/bin/p11proxy" --config "$TMP/svc/proxy.yaml" keys list

# --- what it can: the slot through p11-kit-client.so ---
P11=(pkcs11-tool --module "$CLIENT_MODULE" --token-label v-trust)
outcome "trust: the application sees the virtual slot through p11-kit-client.so" ok \
	as_app "${P11[@]}" -L
grep -q "token label *: v-trust" "$TMP/out" ||
	fail "trust: the slot's token label through the socket" "$(head -c 300 "$TMP/out")"
outcome "trust: a key pair made through the socket" ok as_app "${P11[@]}" --login \
	--pin env:APP_PIN --keypairgen --key-type EC:prime256v1 --id 74 --label trust-key
printf 'signed through p11-kit server\n' >"$TMP/app/msg"
openssl dgst -sha256 -binary -out "$TMP/app/msg.sha256" "$TMP/app/msg"
chown nobody:nogroup "$TMP/app"/msg*
outcome "trust: signing through p11-kit-client.so works" ok as_app "${P11[@]}" --login \
	--pin env:APP_PIN --sign --id 74 -m ECDSA --input-file msg.sha256 --output-file msg.sig \
	--signature-format openssl
as_app "${P11[@]}" --read-object --type pubkey --id 74 --output-file key.der >/dev/null 2>&1
if openssl pkey -pubin -inform DER -in "$TMP/app/key.der" -out "$TMP/key.pem" 2>/dev/null &&
	openssl dgst -sha256 -verify "$TMP/key.pem" -signature "$TMP/app/msg.sig" "$TMP/app/msg" \
		>/dev/null 2>&1; then
	pass "trust: the signature verifies"
else
	fail "trust: the signature verifies"
fi
outcome "trust: the member's PIN does not log the application in" fail as_app env \
	MEMBER_PIN="$TEST_USER_PIN" "${P11[@]}" --login --pin env:MEMBER_PIN --sign --id 74 \
	-m ECDSA --input-file msg.sha256 --output-file msg2.sig
# A connection from a process whose group is not the application's (root here) is refused.
outcome "trust: a connection from another group is refused" fail env -i PATH="$PATH" \
	P11_KIT_SERVER_ADDRESS="unix:path=$SOCK" pkcs11-tool --module "$CLIENT_MODULE" \
	--token-label v-trust -L

# --- the operator denies signing with the key (as the service user): refused to the client ---
KEY="pkcs11:token=v-trust;object=trust-key;type=private"
outcome "trust: p11proxy keys deny as the service user" ok as_svc "$TMP/bin/p11proxy" keys deny \
	"$KEY" sign
as_app "${P11[@]}" --login --pin env:APP_PIN --sign --id 74 -m ECDSA --input-file msg.sha256 \
	--output-file msg3.sig >"$TMP/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "CKR_KEY_FUNCTION_NOT_PERMITTED" "$TMP/out"; then
	pass "trust: a denied key is refused to the client (CKR_KEY_FUNCTION_NOT_PERMITTED)"
else
	fail "trust: a denied key is refused to the client (CKR_KEY_FUNCTION_NOT_PERMITTED)" \
		"exit $rc: $(head -c 300 "$TMP/out" | tr '\n' ' ')"
fi
outcome "trust: p11proxy keys allow again" ok as_svc "$TMP/bin/p11proxy" keys allow "$KEY" sign
outcome "trust: signing works again" ok as_app "${P11[@]}" --login --pin env:APP_PIN --sign \
	--id 74 -m ECDSA --input-file msg.sha256 --output-file msg4.sig
# A deactivated key: the proxy's vendor-defined result code crosses the socket unchanged.
outcome "trust: p11proxy keys deactivate as the service user" ok as_svc "$TMP/bin/p11proxy" keys \
	deactivate "$KEY"
as_app "${P11[@]}" --login --pin env:APP_PIN --sign --id 74 -m ECDSA --input-file msg.sha256 \
	--output-file msg5.sig >"$TMP/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -qi "0xd0310001" "$TMP/out"; then
	pass "trust: a deactivated key is refused to the client (P11PROXY_CKR_KEY_DEACTIVATED)"
else
	fail "trust: a deactivated key is refused to the client (P11PROXY_CKR_KEY_DEACTIVATED)" \
		"exit $rc: $(head -c 300 "$TMP/out" | tr '\n' ' ')"
fi
as_svc "$TMP/bin/p11proxy" keys activate "$KEY" >/dev/null 2>&1

# --- the mechanisms p11-kit's RPC passes (docs/SECURITY.md publishes the table) ---
# In-process (the service user loading libproxy.so) against through the socket (the
# application): the same program, the same token, the same user PIN.
if as_svc env RPCMECHS_PIN="$APP_PIN" "$TMP/bin/rpcmechs" "$TMP/bin/libproxy.so" v-trust \
	>"$TMP/mechs.direct" 2>"$TMP/mechs.err" &&
	as_app env RPCMECHS_PIN="$APP_PIN" "$TMP/bin/rpcmechs" "$CLIENT_MODULE" v-trust \
		>"$TMP/mechs.rpc" 2>>"$TMP/mechs.err"; then
	pass "trust: rpcmechs in-process and through p11-kit server"
else
	fail "trust: rpcmechs in-process and through p11-kit server" "$(head -c 300 "$TMP/mechs.err")"
fi
paste -d' ' "$TMP/mechs.direct" "$TMP/mechs.rpc" |
	awk '{ for (i = 2; i <= 6; i++) sub("^[a-z]+=", "", $i);
	       printf "%-29s %-4s %-22s %-4s %s\n", $1, $2, $3, $5, $6 }' >"$TMP/mechs.table"
direct_ok=$(grep -c ' op=OK' "$TMP/mechs.direct")
rpc_ok=$(grep -c ' op=OK' "$TMP/mechs.rpc")
rpc_listed=$(grep -c 'listed=yes' "$TMP/mechs.rpc")
echo "    p11-kit $(pkg-config --modversion p11-kit-1 2>/dev/null || echo '?'): $rpc_listed mechanisms listed and $rpc_ok working through the socket, $direct_ok working in-process"
if [ -n "${TRUST_MECHS_OUT:-}" ]; then
	cp "$TMP/mechs.table" "$TRUST_MECHS_OUT"
fi
# The published table is what this p11-kit does (when it is the version the table was made with).
published=$SRCDIR/docs/rpc-mechanisms.txt
version=$(pkg-config --modversion p11-kit-1 2>/dev/null)
if [ ! -f "$published" ]; then
	skip "trust: docs/rpc-mechanisms.txt matches p11-kit $version" "no published table"
elif ! grep -q "^# p11-kit $version\$" "$published"; then
	skip "trust: docs/rpc-mechanisms.txt matches p11-kit $version" "table made with $(sed -n 's/^# p11-kit //p' "$published" | head -1)"
elif diff <(grep -v '^#' "$published") "$TMP/mechs.table" >"$TMP/mechs.diff"; then
	pass "trust: docs/rpc-mechanisms.txt matches p11-kit $version"
else
	fail "trust: docs/rpc-mechanisms.txt matches p11-kit $version" "$(head -5 "$TMP/mechs.diff" | tr '\n' ' ')"
fi
