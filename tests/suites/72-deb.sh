# The Debian packages: dpkg-buildpackage builds them from a copy of the tree; they install
# (dpkg -i, as root), register the module with p11-kit, sign through the installed module;
# remove and purge leave nothing behind. Installing touches the real system, so the suite runs
# only as root, in normal mode, on a machine where no p11proxy package, /etc/p11proxy or
# /var/lib/p11proxy is there already (the purge would take the latter), one run at a time.
[ "$MODE" = normal ] || { skip "deb" "normal mode only"; return 0; }
[ "$(id -u)" -eq 0 ] || { skip "deb" "installs packages: root only"; return 0; }
for tool in dpkg-buildpackage dh pkcs11-tool p11-kit openssl; do
	command -v "$tool" >/dev/null 2>&1 ||
		{ skip "deb" "$tool not installed (tests/install-deps.sh installs it)"; return 0; }
done
mk_tmp
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
ARCH=$(dpkg --print-architecture)
VERSION=$(dpkg-parsechangelog -l "$SRCDIR/debian/changelog" -S Version)
PKGS="p11proxy-module p11proxy libp11proxy-dev"
MODULE_PATH=/usr/lib/$MA/pkcs11/libproxy.so
LOG=$TMP/log
hdr_version=$(sed -n 's/^#define P11PROXY_VERSION_MAJOR //p' "$SRCDIR/include/p11proxy.h").$(
	sed -n 's/^#define P11PROXY_VERSION_MINOR //p' "$SRCDIR/include/p11proxy.h")
if [ "$VERSION" = "$hdr_version" ]; then
	pass "deb: debian/changelog version $VERSION is p11proxy.h's"
else
	fail "deb: debian/changelog version $VERSION is p11proxy.h's" "p11proxy.h says $hdr_version"
fi

# --- build ------------------------------------------------------------------------------------
# A copy of the tree as it is (uncommitted changes included), without build products.
mkdir "$TMP/src"
tar -C "$SRCDIR" --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./state \
	--exclude=./debian/build --exclude=./debian/tmp -c . | tar -C "$TMP/src" -x
t0=$(date +%s)
if (cd "$TMP/src" && DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=2" \
	dpkg-buildpackage -us -uc -b) >"$LOG" 2>&1; then
	pass "deb: dpkg-buildpackage -us -uc -b ($(($(date +%s) - t0)) s)"
else
	fail "deb: dpkg-buildpackage -us -uc -b" "$(tail -5 "$LOG" | tr '\n' ' ')"
	return 0
fi
debs=""
for p in $PKGS; do
	f=$TMP/${p}_${VERSION}_$ARCH.deb
	[ -f "$f" ] && debs="$debs $f"
done
if [ "$(echo $debs | wc -w)" -eq 3 ]; then
	pass "deb: three binary packages ($PKGS)"
else
	fail "deb: three binary packages ($PKGS)" "built: $(cd "$TMP" && echo *.deb)"
	return 0
fi
# What each package holds (the path lists the install test below relies on).
contents() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
has() { contents "$TMP/${1}_${VERSION}_$ARCH.deb" | grep -qx "$2"; }
ok_has=1
for want in "p11proxy-module $MODULE_PATH" \
	"p11proxy-module /usr/share/p11-kit/modules/p11proxy.module" \
	"p11proxy /usr/bin/p11proxy" "p11proxy /usr/share/man/man8/p11proxy.8.gz" \
	"p11proxy /usr/share/man/man7/p11proxy.7.gz" "p11proxy /usr/share/man/man5/proxy.yaml.5.gz" \
	"p11proxy /usr/share/doc/p11proxy/examples/proxy.yaml" "p11proxy /etc/default/p11proxy" \
	"p11proxy /lib/systemd/system/p11proxy-health.service" \
	"p11proxy /usr/lib/sysusers.d/p11proxy.conf" \
	"libp11proxy-dev /usr/include/p11proxy.h" \
	"libp11proxy-dev /usr/lib/$MA/pkgconfig/p11proxy.pc"; do
	# shellcheck disable=SC2086
	has $want || { ok_has=0; echo "    missing: $want"; }
done
check "deb: each package holds its files" test $ok_has = 1
# The registration names the module by file name: p11-kit finds it in its module directory,
# and the file is the same for every architecture (Multi-Arch: same).
if dpkg-deb --fsys-tarfile "$TMP/p11proxy-module_${VERSION}_$ARCH.deb" |
	tar -xO ./usr/share/p11-kit/modules/p11proxy.module | grep -qx "module: libproxy.so" &&
	[ "$(pkg-config --variable=p11_module_path p11-kit-1)" = "/usr/lib/$MA/pkcs11" ]; then
	pass "deb: p11-kit registration names libproxy.so in p11-kit's module directory"
else
	fail "deb: p11-kit registration names libproxy.so in p11-kit's module directory"
fi
if command -v lintian >/dev/null 2>&1; then
	if lintian --fail-on error "$TMP"/p11proxy_"${VERSION}"_"$ARCH".changes >"$LOG" 2>&1; then
		pass "deb: lintian (no errors)"
	else
		fail "deb: lintian (no errors)" "$(grep '^E:' "$LOG" | head -5 | tr '\n' ' ')"
	fi
else
	skip "deb: lintian" "lintian not installed"
fi

# --- install, use, remove, purge (one run at a time on this machine) -------------------------
exec 9>/tmp/p11proxy-72-deb.lock
if ! flock -w 300 9; then
	skip "deb: install" "another run holds /tmp/p11proxy-72-deb.lock"
	return 0
fi
# known PACKAGE: dpkg has it installed, or its configuration files.
known() {
	case $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) in
	"" | un* | pn*) return 1 ;;
	*) return 0 ;;
	esac
}
for p in $PKGS; do
	known "$p" && { skip "deb: install" "$p is already on this machine (dpkg -P it first)"; return 0; }
done
for d in /etc/p11proxy /var/lib/p11proxy; do
	[ -e "$d" ] && { skip "deb: install" "$d exists: the test's purge would remove it"; return 0; }
done
user_before=absent
getent passwd p11proxy >/dev/null && user_before=present

# dpkg does not wait for its lock (another apt-get or dpkg on the machine): retry for a minute.
dpkg_do() {
	local i
	for i in $(seq 1 30); do
		dpkg "$@" >"$LOG" 2>&1 && return 0
		grep -q 'lock' "$LOG" || return 1
		sleep 2
	done
	return 1
}
purge_all() {
	# shellcheck disable=SC2086
	dpkg_do --purge $PKGS
	if [ "$user_before" = absent ] && getent passwd p11proxy >/dev/null; then
		# The package leaves its system user on purge (Debian's way); the test was its only
		# reason to exist here.
		userdel p11proxy 2>/dev/null
		getent group p11proxy >/dev/null && groupdel p11proxy 2>/dev/null
	fi
}
# Neither directory was there before (checked above): whatever happens, they go.
trap 'purge_all >/dev/null 2>&1; rm -rf /etc/p11proxy /var/lib/p11proxy "$TMP"' EXIT

# shellcheck disable=SC2086
if dpkg_do -i $debs; then
	pass "deb: dpkg -i installs the three packages"
else
	fail "deb: dpkg -i installs the three packages" "$(tail -5 "$LOG" | tr '\n' ' ')"
	return 0
fi
# Files as dpkg recorded them, for the removal checks.
# shellcheck disable=SC2086
dpkg -L $PKGS >"$TMP/files" 2>/dev/null
if [ -f "$MODULE_PATH" ] && [ -x /usr/bin/p11proxy ] && [ -d /etc/p11proxy ] &&
	getent passwd p11proxy >/dev/null && [ -f /etc/default/p11proxy ] &&
	grep -qx /etc/default/p11proxy /var/lib/dpkg/info/p11proxy.conffiles; then
	pass "deb: module, CLI, /etc/p11proxy, user p11proxy, /etc/default/p11proxy (a conffile)"
else
	fail "deb: module, CLI, /etc/p11proxy, user p11proxy, /etc/default/p11proxy (a conffile)"
fi
# Installed disabled: no symlink in /etc/systemd/system.
if ! find /etc/systemd/system -name p11proxy-health.service 2>/dev/null | grep -q .; then
	pass "deb: p11proxy-health.service installed, not enabled"
else
	fail "deb: p11proxy-health.service installed, not enabled"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(systemd-analyze verify --man=no /lib/systemd/system/p11proxy-health.service 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then
		pass "deb: systemd-analyze verify of the installed unit"
	else
		fail "deb: systemd-analyze verify of the installed unit" "$out"
	fi
fi

# A SoftHSM2 token behind one virtual slot, configured through P11PROXY_CONF.
softhsm_setup "$TMP/hsm" m1 || { fail "deb: softhsm setup"; return 0; }
proxy_conf "$TMP/hsm/proxy.yaml" m1
if p11-kit list-modules >"$LOG" 2>&1 &&
	sed -n '/^p11proxy: /,/^[^ ]/p' "$LOG" | grep -q "token: v-m1"; then
	pass "deb: p11-kit list-modules shows module p11proxy with the virtual slot"
else
	fail "deb: p11-kit list-modules shows module p11proxy with the virtual slot" \
		"$(grep -A3 '^p11proxy' "$LOG" | tr '\n' ' ')"
fi
p11kit_proxy=/usr/lib/$MA/p11-kit-proxy.so
if [ -f "$p11kit_proxy" ] && pkcs11-tool --module "$p11kit_proxy" -L 2>&1 |
	grep -q "token label *: v-m1"; then
	pass "deb: p11-kit-proxy.so serves the virtual slot"
else
	fail "deb: p11-kit-proxy.so serves the virtual slot"
fi
# Sign through the installed module; openssl verifies.
p11() { pkcs11-tool --module "$MODULE_PATH" --token-label v-m1 "$@" >"$LOG" 2>&1; }
echo "signed through the installed module" >"$TMP/data"
openssl dgst -sha256 -binary "$TMP/data" >"$TMP/data.sha256"
if p11 --login --pin "$TEST_USER_PIN" --keypairgen --key-type EC:prime256v1 --id 01 --label k1 &&
	p11 --read-object --type pubkey --id 01 -o "$TMP/k1.der" &&
	openssl pkey -pubin -inform DER -in "$TMP/k1.der" -out "$TMP/k1.pem" 2>>"$LOG" &&
	p11 --login --pin "$TEST_USER_PIN" --sign --id 01 -m ECDSA --input-file "$TMP/data.sha256" \
		--output-file "$TMP/sig" --signature-format openssl &&
	openssl dgst -sha256 -verify "$TMP/k1.pem" -signature "$TMP/sig" "$TMP/data" >>"$LOG" 2>&1; then
	pass "deb: pkcs11-tool signs through $MODULE_PATH, openssl verifies"
else
	fail "deb: pkcs11-tool signs through $MODULE_PATH, openssl verifies" "$(tail -2 "$LOG")"
fi
if /usr/bin/p11proxy check-config >"$LOG" 2>&1 && grep -q ': OK (1 backend, 1 slot)' "$LOG"; then
	pass "deb: the installed CLI reads the configuration"
else
	fail "deb: the installed CLI reads the configuration" "$(cat "$LOG")"
fi
cat >"$TMP/app.c" <<'APP'
#include <p11proxy.h>
int main(void) { return CKM_P11PROXY_FRAGMENT_DERIVE == 0; }
APP
# shellcheck disable=SC2046
if [ "$(pkg-config --modversion p11proxy)" = "$VERSION" ] &&
	[ "$(pkg-config --variable=moduledir p11proxy)" = "/usr/lib/$MA/pkcs11" ] &&
	cc -std=c11 -Wall -Werror $(pkg-config --cflags p11proxy) -o "$TMP/app" "$TMP/app.c" &&
	"$TMP/app"; then
	pass "deb: libp11proxy-dev: an application builds with pkg-config p11proxy"
else
	fail "deb: libp11proxy-dev: an application builds with pkg-config p11proxy"
fi

# Runtime state (what the CLI writes under the default state_dir) and an operator's file.
mkdir -p /var/lib/p11proxy/slots && echo "state" >/var/lib/p11proxy/slots/x.members
echo "backends: []" >/etc/p11proxy/proxy.yaml

# remove keeps the configuration; purge takes it, the state and every file.
# shellcheck disable=SC2086
if dpkg_do --remove $PKGS && [ ! -e "$MODULE_PATH" ] && [ ! -e /usr/bin/p11proxy ] &&
	[ -f /etc/p11proxy/proxy.yaml ] && [ -f /etc/default/p11proxy ] &&
	[ -d /var/lib/p11proxy ]; then
	pass "deb: dpkg --remove: files gone, configuration and state kept"
else
	fail "deb: dpkg --remove: files gone, configuration and state kept" "$(tail -3 "$LOG")"
fi
# shellcheck disable=SC2086
if dpkg_do --purge $PKGS; then
	pass "deb: dpkg --purge"
else
	fail "deb: dpkg --purge" "$(tail -3 "$LOG")"
fi
left=""
while read -r f; do
	[ -e "$f" ] || [ -L "$f" ] || continue
	if [ ! -d "$f" ] || case $f in *p11proxy*) true ;; *) false ;; esac; then
		left="$left $f"
	fi
done <"$TMP/files"
for f in /etc/p11proxy /var/lib/p11proxy /etc/default/p11proxy /usr/lib/*/pkcs11/libproxy.so \
	/usr/share/p11-kit/modules/p11proxy.module \
	/var/lib/systemd/deb-systemd-helper-enabled/p11proxy-health.service.dsh-also; do
	[ -e "$f" ] && left="$left $f"
done
for p in $PKGS; do
	known "$p" && left="$left (package $p)"
done
if [ -z "$left" ] && [ -s "$TMP/files" ]; then
	pass "deb: nothing left after purge (dpkg -L files, /etc/p11proxy, /var/lib/p11proxy, libproxy.so)"
else
	fail "deb: nothing left after purge" "left:$left"
fi
if p11-kit list-modules 2>&1 | grep -q '^p11proxy'; then
	fail "deb: p11-kit no longer lists p11proxy after purge"
else
	pass "deb: p11-kit no longer lists p11proxy after purge"
fi

# A /etc/p11proxy that was there before the package is the operator's: purge leaves it.
mkdir /etc/p11proxy && echo "mine" >/etc/p11proxy/proxy.yaml
if dpkg_do -i "$TMP/p11proxy-module_${VERSION}_$ARCH.deb" && dpkg_do --purge p11proxy-module &&
	[ "$(cat /etc/p11proxy/proxy.yaml 2>/dev/null)" = mine ] &&
	[ ! -e /etc/p11proxy/.made-by-p11proxy-module ]; then
	pass "deb: purge keeps an /etc/p11proxy the package did not create"
else
	fail "deb: purge keeps an /etc/p11proxy the package did not create" "$(tail -3 "$LOG")"
fi
rm -rf /etc/p11proxy
purge_all >/dev/null 2>&1
if [ "$user_before" = absent ] && getent passwd p11proxy >/dev/null; then
	fail "deb: the test removes the p11proxy user it brought"
fi
