# Java and NSS on an HA pair with the default settings (issue 10): through the fault shim over
# two SoftHSM2 tokens, with a replication key made by `p11proxy replication-key create`.
# NSS: `certutil -S` makes a self-signed CA certificate with a new EC key on the slot's token;
# Java: `keytool -genkeypair` (EC P-256) through SunPKCS11. Both members then hold each key and
# certificate. The first member fails, and through the second NSS finds the key and the
# certificate (certutil -L, -K) and issues a certificate with the key (certutil -S -c), Java
# lists its entry (key and certificate) and signs with it (keytool -gencert, jarsigner).
# Normal mode only: the clients are not ours (as 60-clients); the module's part of the same
# paths runs under ASan and valgrind in 66-replication. Each client is skipped, with the
# reason, when its tools are not installed (libnss3-tools; openjdk-17-jre-headless, and
# openjdk-17-jdk-headless for jarsigner).

if [ "$MODE" != normal ]; then
	skip "javanss" "real clients run in normal mode only (mode $MODE)"
	exit 0
fi
for tool in pkcs11-tool openssl softhsm2-util python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		skip "javanss" "$tool not installed (make deps)"
		exit 0
	fi
done
NSS=1
for tool in certutil modutil; do
	command -v "$tool" >/dev/null 2>&1 || NSS=
done
JAVA=1
command -v keytool >/dev/null 2>&1 || JAVA=
JARSIGNER=
command -v jarsigner >/dev/null 2>&1 && [ -n "$JAVA" ] && JARSIGNER=1
if [ -z "$NSS" ] && [ -z "$JAVA" ]; then
	skip "javanss" \
		"neither certutil/modutil (libnss3-tools) nor keytool (openjdk-17-jre-headless)"
	exit 0
fi

mk_tmp
mkdir -p "$TMP/state"
softhsm_setup "$TMP" m1 m2 || { fail "javanss: softhsm setup"; exit 0; }
export P11SHIM_MODULE=$SOFTHSM_MODULE P11SHIM_CONTROL=$TMP/control P11SHIM_LOG=$TMP/calls.log
: >"$P11SHIM_CONTROL"
{
	printf 'state_dir: %s\n' "$TMP/state"
	printf 'backends:\n  - name: shim\n    module: %s\nslots:\n' "$BUILD/tests/libshim.so"
	printf '  - label: ha\n    ha: { replication_key: repl }\n    members:\n'
	printf '      - backend: shim\n        token_label: m1\n'
	printf '      - backend: shim\n        token_label: m2\n'
} >"$TMP/proxy.yaml"
export P11PROXY_CONF=$TMP/proxy.yaml
M=$PROXY_MODULE
PIN=$TEST_USER_PIN
LOG=$TMP/log
export P11P_SO_PIN=$TEST_SO_PIN
# Every client run is bounded: a hang is a failure, not a stuck suite.
LIMIT=60

# ok NAME COMMAND...: pass when the command exits 0, otherwise fail and show $LOG.
ok() {
	local name=$1 rc=0
	shift
	"$@" || rc=$?
	if [ "$rc" -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "exit $rc"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
}
# on TOKEN: pkcs11-tool -O of one member's token (SoftHSM2 directly) into $TMP/TOKEN.objs.
on() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$PIN" -O \
		>"$TMP/$1.objs" 2>&1
}
# count TOKEN KIND ID: objects of KIND ("Private Key", "Public Key", "Certificate") with the
# CKA_ID ID (hex) in $TMP/TOKEN.objs.
count() {
	awk -v kind="$2" -v id="$3" '
		/Object;/ { cur = index($0, kind " Object") == 1 }
		cur && $1 == "ID:" && $2 == id { n++ }
		END { print n + 0 }' "$TMP/$1.objs"
}
# id_of TOKEN LABEL: the CKA_ID of the certificate labelled LABEL in $TMP/TOKEN.objs.
id_of() {
	awk -v label="$2" '
		/Object;/ { cur = index($0, "Certificate Object") == 1; hit = 0 }
		cur && $1 == "label:" {
			l = $0; sub(/^[ \t]*label:[ \t]*/, "", l); hit = l == label
		}
		hit && $1 == "ID:" { print $2; exit }' "$TMP/$1.objs"
}
# locked TOKEN ID: the private key with that CKA_ID is not extractable (nor "never
# extractable": it was made extractable to be wrapped, then locked).
locked() {
	awk -v id="$2" '
		/Object;/ { cur = index($0, "Private Key Object") == 1; hit = 0 }
		cur && $1 == "ID:" { hit = $2 == id }
		hit && $1 == "Access:" { a = $0 }
		END { exit !(a != "" && a !~ /extractable/) }' "$TMP/$1.objs"
}
# members NAME CERTLABEL PUB: both members hold the private key and the certificate, and PUB
# (1 or 0) public keys (NSS keeps the public key on the token, SunPKCS11 does not), found by
# the certificate's CKA_ID; the private key locked.
members() {
	local name=$1 label=$2 t id got bad=
	on m1
	on m2
	id=$(id_of m1 "$label")
	for t in m1 m2; do
		got="$(count $t 'Private Key' "$id") $(count $t 'Public Key' "$id")"
		got="$got $(count $t Certificate "$id")"
		if [ -z "$id" ] || [ "$got" != "1 $3 1" ] || ! locked $t "$id"; then
			bad="$bad $t: id '$id' private/public/cert $got, wanted 1 $3 1"
			bad="$bad$(locked $t "$id" || echo ', not locked');"
		fi
	done
	if [ -z "$bad" ]; then
		pass "$name"
	else
		fail "$name" "$bad"
		sed 's/^/    m1| /' "$TMP/m1.objs" | head -n 40
		sed 's/^/    m2| /' "$TMP/m2.objs" | head -n 40
	fi
}

if printf '%s\n' "$PIN" | "$CLI" replication-key create ha --so-pin-source env:P11P_SO_PIN \
	>"$LOG" 2>&1; then
	pass "javanss: replication-key create on both members"
else
	fail "javanss: replication-key create on both members"
	sed 's/^/    | /' "$LOG"
fi

# --- NSS: certutil -S on the slot's token -----------------------------------------------------

DB=sql:$TMP/nssdb
# nss ARGS...: an NSS tool, bounded, no terminal, output in $LOG.
nss() {
	timeout -k 5 "$LIMIT" "$@" </dev/null >"$LOG" 2>&1
}
if [ -n "$NSS" ]; then
	mkdir -p "$TMP/nssdb"
	# "TOKEN:PIN": certutil asks for the PIN of each token it logs in to by its name.
	printf 'ha:%s\n' "$PIN" >"$TMP/nss.pw"
	head -c 64 /dev/urandom >"$TMP/noise"
	if nss certutil -N -d "$DB" --empty-password &&
		nss modutil -dbdir "$DB" -add p11proxy -libfile "$M" -force &&
		nss modutil -dbdir "$DB" -list p11proxy && grep -Eq 'Token Name: ha *$' "$LOG"; then
		pass "javanss: NSS: modutil -add the proxy module, its token ha listed"
	else
		fail "javanss: NSS: modutil -add the proxy module"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
	# A CA certificate (the answers to -2: a CA, no path length, not critical), so that
	# openssl can check what it issues later.
	if printf 'y\n\nn\n' | timeout -k 5 "$LIMIT" certutil -S -d "$DB" -h ha -f "$TMP/nss.pw" \
		-z "$TMP/noise" -n nss1 -s CN=nss1 -x -2 -t CTu,Cu,Cu -k ec -q nistp256 -v 12 \
		-m 1 >"$LOG" 2>&1; then
		pass "javanss: NSS: certutil -S a self-signed certificate, a new EC key on the slot"
	else
		fail "javanss: NSS: certutil -S a self-signed certificate with a new EC key"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
	if nss certutil -L -d "$DB" -h ha -f "$TMP/nss.pw" -n ha:nss1 -a &&
		openssl x509 -in "$LOG" -out "$TMP/nss1.pem" 2>/dev/null &&
		openssl x509 -in "$TMP/nss1.pem" -noout -subject | grep -q 'CN *= *nss1' &&
		nss certutil -K -d "$DB" -h ha -f "$TMP/nss.pw" &&
		grep -Eq '^<.*> ec +[0-9a-f]+ +ha:nss1$' "$LOG"; then
		pass "javanss: NSS: certutil -L and -K list the certificate and its key"
	else
		fail "javanss: NSS: certutil -L and -K list the certificate and its key"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
	members "javanss: NSS: both members hold the key pair and the certificate, the key locked" \
		nss1 1
else
	skip "javanss: NSS" "certutil/modutil not installed (libnss3-tools, make deps)"
fi

# --- Java: keytool -genkeypair through SunPKCS11 ----------------------------------------------

cat >"$TMP/java.cfg" <<EOF
name = p11proxy
library = $M
slotListIndex = 0
EOF
# kt TOOL ARGS...: keytool or jarsigner on the slot's keystore, bounded, output in $LOG.
# No hsperfdata file left in /tmp; the C1 compiler only, for a quicker start.
kt() {
	local tool=$1
	shift
	timeout -k 5 "$LIMIT" "$tool" -J-XX:-UsePerfData -J-XX:TieredStopAtLevel=1 -keystore NONE \
		-storetype PKCS11 -addprovider SunPKCS11 -providerArg "$TMP/java.cfg" \
		-storepass "$PIN" "$@" \
		</dev/null >"$LOG" 2>&1
}
# fingerprint FILE: the SHA-256 fingerprint of the certificate in FILE, as keytool shows it.
fingerprint() {
	openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//'
}
if [ -n "$JAVA" ]; then
	# A CA (bc:c) so that openssl checks what keytool -gencert issues with it.
	ok "javanss: Java: keytool -genkeypair EC P-256 on the slot (SunPKCS11)" \
		kt keytool -genkeypair -alias jk -keyalg EC -groupname secp256r1 -dname CN=jk \
		-validity 30 -ext bc:c
	kt keytool -list
	cp "$LOG" "$TMP/list1"
	if grep -q '^jk, PrivateKeyEntry' "$TMP/list1"; then
		pass "javanss: Java: keytool -list shows the entry jk (key and certificate)"
	else
		fail "javanss: Java: keytool -list shows the entry jk"
		sed 's/^/    | /' "$TMP/list1" | head -n 30
	fi
	members "javanss: Java: both members hold the private key and the certificate, key locked" \
		jk 0
else
	skip "javanss: Java" "keytool not installed (openjdk-17-jre-headless, make deps)"
fi

# --- the first member fails: everything through the second -----------------------------------

printf 'm1 fail CKR_DEVICE_ERROR\n' >"$P11SHIM_CONTROL"

if [ -n "$NSS" ]; then
	if nss certutil -L -d "$DB" -h ha -f "$TMP/nss.pw" -n ha:nss1 -a &&
		openssl x509 -in "$LOG" -out "$TMP/nss1.again" 2>/dev/null &&
		cmp -s "$TMP/nss1.again" "$TMP/nss1.pem" &&
		nss certutil -K -d "$DB" -h ha -f "$TMP/nss.pw" &&
		grep -Eq '^<.*> ec +[0-9a-f]+ +ha:nss1$' "$LOG"; then
		pass "javanss: NSS: m1 failed: certutil -L, -K find the certificate and key on m2"
	else
		fail "javanss: NSS: m1 failed: certutil -L, -K find the certificate and key on m2"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
	# The new leaf's key goes on the slot too (certutil -S logs in to the token before it
	# looks up the issuer; certutil -C would ask for the PIN on a terminal).
	if nss certutil -S -d "$DB" -h ha -f "$TMP/nss.pw" -z "$TMP/noise" -n leaf1 -s CN=leaf1 \
		-c ha:nss1 -t ,, -k ec -q nistp256 -v 12 -m 2 &&
		nss certutil -L -d "$DB" -h ha -f "$TMP/nss.pw" -n ha:leaf1 -a &&
		openssl x509 -in "$LOG" -out "$TMP/leaf1.pem" 2>/dev/null &&
		openssl verify -CAfile "$TMP/nss1.pem" "$TMP/leaf1.pem" >"$LOG" 2>&1; then
		pass "javanss: NSS: m1 failed: certutil -S -c issues with the key on m2 (verified)"
	else
		fail "javanss: NSS: m1 failed: certutil -S -c issues with the key on m2"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
fi

if [ -n "$JAVA" ]; then
	want=$(sed -n '/^jk, PrivateKeyEntry/{n;s/^.*: //p}' "$TMP/list1")
	if kt keytool -list && grep -q '^jk, PrivateKeyEntry' "$LOG" &&
		[ -n "$want" ] && grep -qF "$want" "$LOG"; then
		pass "javanss: Java: m1 failed: keytool -list shows jk (key and certificate) on m2"
	else
		fail "javanss: Java: m1 failed: keytool -list shows jk on m2" "fingerprint '$want'"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
	# keytool -gencert signs a certificate for a request with the key (the JRE alone).
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/r.key" \
		-subj /CN=jleaf -out "$TMP/r.csr" 2>/dev/null
	if kt keytool -gencert -alias jk -infile "$TMP/r.csr" -outfile "$TMP/jleaf.der" \
		-validity 30 && kt keytool -exportcert -rfc -alias jk -file "$TMP/jk.pem" &&
		[ "$(fingerprint "$TMP/jk.pem")" = "$want" ] &&
		openssl x509 -inform DER -in "$TMP/jleaf.der" -out "$TMP/jleaf.pem" 2>>"$LOG" &&
		openssl verify -CAfile "$TMP/jk.pem" "$TMP/jleaf.pem" >>"$LOG" 2>&1; then
		pass "javanss: Java: m1 failed: keytool -gencert signs with jk on m2 (verified)"
	else
		fail "javanss: Java: m1 failed: keytool -gencert signs with jk on m2"
		sed 's/^/    | /' "$LOG" | head -n 30
	fi
	if [ -n "$JARSIGNER" ]; then
		python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("hello.txt", "p11proxy\n")' "$TMP/t.jar"
		# The signature block is CMS: openssl checks it over the signature file, and that
		# the signer is jk's certificate.
		if kt jarsigner -sigalg SHA256withECDSA "$TMP/t.jar" jk &&
			mkdir -p "$TMP/jar" && python3 -m zipfile -e "$TMP/t.jar" "$TMP/jar" &&
			openssl cms -verify -inform DER -in "$TMP/jar/META-INF/JK.EC" -binary \
				-content "$TMP/jar/META-INF/JK.SF" -noverify -out /dev/null \
				-certsout "$TMP/signer.pem" >>"$LOG" 2>&1 &&
			[ "$(fingerprint "$TMP/signer.pem")" = "$want" ]; then
			pass "javanss: Java: m1 failed: jarsigner signs with jk on m2 (verified)"
		else
			fail "javanss: Java: m1 failed: jarsigner signs with jk on m2"
			sed 's/^/    | /' "$LOG" | head -n 30
		fi
	else
		skip "javanss: Java: jarsigner" \
			"jarsigner is in the JDK (openjdk-17-jdk-headless), not installed"
	fi
fi
: >"$P11SHIM_CONTROL"
