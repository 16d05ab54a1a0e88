# make install into a temp prefix; the module exports one symbol; p11-kit sees the virtual slots.
# Nothing is written outside PREFIX (GNU SYSCONFDIR: $(PREFIX)/etc) or DESTDIR, and `make
# uninstall` removes every file `make install` wrote.
[ "$MODE" = normal ] || { skip "install" "normal mode only"; return 0; }
mk_tmp
softhsm_setup "$TMP" m1 || { fail "install: softhsm setup"; return; }
proxy_conf "$TMP/proxy.yaml" m1
prefix=$TMP/prefix

# Paths outside any prefix that an install honouring PREFIX must leave alone.
outside="/etc/p11proxy /etc/default/p11proxy /usr/local/etc/p11proxy /usr/lib/sysusers.d/p11proxy.conf
/usr/lib/systemd/system/p11proxy-health.service /lib/systemd/system/p11proxy-health.service"
outside_before=""
for f in $outside; do [ -e "$f" ] && outside_before="$outside_before $f"; done

if make -s -C "$SRCDIR" O="$BUILD" install PREFIX="$prefix" >"$TMP/log" 2>&1; then
	pass "install: make install PREFIX=..."
else
	fail "install: make install PREFIX=..." "$(tail -3 "$TMP/log")"
	return
fi
# Exactly these files, relative to the prefix (SYSCONFDIR defaults to PREFIX/etc).
files_expected="bin/p11proxy
etc/default/p11proxy
etc/p11proxy/proxy.yaml.example
include/p11proxy.h
lib/pkcs11/libproxy.so
lib/pkgconfig/p11proxy.pc
lib/systemd/system/p11proxy-health.service
lib/sysusers.d/p11proxy.conf
share/bash-completion/completions/p11proxy
share/man/man5/proxy.yaml.5
share/man/man7/p11proxy.7
share/man/man8/p11proxy.8
share/p11-kit/modules/p11proxy.module"
# files_in DIR: the regular files and links under DIR, relative, sorted.
files_in() { (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | LC_ALL=C sort); }
got=$(files_in "$prefix")
if [ "$got" = "$files_expected" ]; then
	pass "install: exactly the expected files under PREFIX"
else
	fail "install: exactly the expected files under PREFIX" \
		"$(diff <(echo "$files_expected") <(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
fi
outside_after=""
for f in $outside; do [ -e "$f" ] && outside_after="$outside_after $f"; done
if [ "$outside_after" = "$outside_before" ]; then
	pass "install: nothing written to /etc, /usr or /lib with PREFIX set"
else
	fail "install: nothing written to /etc, /usr or /lib with PREFIX set" \
		"now there:$outside_after (before:$outside_before)"
fi
if grep -qx "P11PROXY_CONF=$prefix/etc/p11proxy/proxy.yaml" "$prefix/etc/default/p11proxy" &&
	grep -qx "ExecStart=$prefix/bin/p11proxy health --listen \${P11PROXY_HEALTH_LISTEN} \$P11PROXY_HEALTH_SLOT" \
		"$prefix/lib/systemd/system/p11proxy-health.service" &&
	grep -qx "EnvironmentFile=-$prefix/etc/default/p11proxy" \
		"$prefix/lib/systemd/system/p11proxy-health.service"; then
	pass "install: the unit and its environment file name the installed paths"
else
	fail "install: the unit and its environment file name the installed paths"
fi
# The unit as systemd reads it (unknown or misspelt settings are only warnings: any output fails).
if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(systemd-analyze verify --man=no "$prefix/lib/systemd/system/p11proxy-health.service" 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then
		pass "install: systemd-analyze verify p11proxy-health.service"
	else
		fail "install: systemd-analyze verify p11proxy-health.service" "$out"
	fi
else
	skip "install: systemd-analyze verify" "systemd-analyze not installed"
fi

# DESTDIR staging with PREFIX=/usr, as an unprivileged user: a write anywhere outside DESTDIR
# (but world-writable directories) fails the install. SYSCONFDIR is /etc for PREFIX=/usr.
stage=$TMP/stage
mkdir -p "$stage" && chown nobody "$stage" && chmod 0711 "$TMP"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/nonexistent "$@"; }
if ! as_nobody test -r "$BUILD/p11proxy" -a -r "$SRCDIR/Makefile" -a -w "$stage" 2>/dev/null; then
	skip "install: DESTDIR as an unprivileged user" "nobody cannot read $SRCDIR or $BUILD, or write $stage"
elif as_nobody make -s -C "$SRCDIR" O="$BUILD" install PREFIX=/usr DESTDIR="$stage" \
	>"$TMP/log-stage" 2>&1; then
	got=$(files_in "$stage")
	want=$(echo "$files_expected" | sed -e 's|^etc/|/etc/|' -e 's|^\([^/]\)|usr/\1|' -e 's|^/||' |
		LC_ALL=C sort)
	if [ "$got" = "$want" ]; then
		pass "install: DESTDIR=... PREFIX=/usr as nobody: only DESTDIR written, /etc for PREFIX=/usr"
	else
		fail "install: DESTDIR=... PREFIX=/usr as nobody: only DESTDIR written, /etc for PREFIX=/usr" \
			"$(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
	fi
	if grep -qx "module: /usr/lib/pkcs11/libproxy.so" "$stage/usr/share/p11-kit/modules/p11proxy.module" &&
		grep -qx "P11PROXY_CONF=/etc/p11proxy/proxy.yaml" "$stage/etc/default/p11proxy" &&
		! grep -rq "$stage" "$stage"; then
		pass "install: DESTDIR appears in no installed file"
	else
		fail "install: DESTDIR appears in no installed file"
	fi
	# The operator's environment file survives uninstall; everything else goes.
	echo "P11PROXY_HEALTH_LISTEN=127.0.0.1:4442" >>"$stage/etc/default/p11proxy"
	if as_nobody make -s -C "$SRCDIR" O="$BUILD" uninstall PREFIX=/usr DESTDIR="$stage" \
		>"$TMP/log-stage" 2>&1 && [ "$(files_in "$stage")" = etc/default/p11proxy ] &&
		[ ! -e "$stage/etc/p11proxy" ]; then
		pass "install: make uninstall DESTDIR=... removes the files, keeps a changed environment file"
	else
		fail "install: make uninstall DESTDIR=... removes the files, keeps a changed environment file" \
			"left: $(files_in "$stage" | tr '\n' ' ') $(tail -2 "$TMP/log-stage")"
	fi
else
	fail "install: DESTDIR=... PREFIX=/usr as nobody" "$(tail -3 "$TMP/log-stage")"
fi

# An application builds against the installed header through pkg-config.
cat >"$TMP/app.c" <<'APP'
#include <p11proxy.h>
#include <stdio.h>
int main(void)
{
	P11PROXY_FRAGMENT_DERIVE_PARAMS p = {NULL, 0, NULL, 0};
	CK_MECHANISM m = {CKM_P11PROXY_FRAGMENT_DERIVE, &p, sizeof(p)};
	printf("%lx %lx %lx\n", (unsigned long)m.mechanism, (unsigned long)CKM_P11PROXY_MIXED_KEY_GEN,
	       (unsigned long)CKA_P11PROXY_FRAGMENT_MODE);
	return 0;
}
APP
pc_build() {
	local flags
	flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags p11proxy) &&
		[ "$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion p11proxy)" = 0.1 ] &&
		# shellcheck disable=SC2086
		cc -std=c11 -Wall -Werror $flags -o "$TMP/app" "$TMP/app.c" &&
		[ "$("$TMP/app")" = "d0310001 d0310002 d0310001" ]
}
check "install: an application builds against p11proxy.h via pkg-config" pc_build

syms=$(nm -D --defined-only "$prefix/lib/pkcs11/libproxy.so" | awk '{print $3}' | tr '\n' ' ')
if [ "$syms" = "C_GetFunctionList " ]; then
	pass "install: the module exports only C_GetFunctionList"
else
	fail "install: the module exports only C_GetFunctionList" "exports: $syms"
fi
if grep -qx "module: $prefix/lib/pkcs11/libproxy.so" "$prefix/share/p11-kit/modules/p11proxy.module"; then
	pass "install: p11-kit module file names the installed module"
else
	fail "install: p11-kit module file names the installed module"
fi

# p11-kit reads only its system module directory (user configs are ignored as
# root): show it ours alone, in a private mount namespace.
p11kit_ns() {
	unshare -m --propagation private sh -c \
		'mount --bind "$0" /usr/share/p11-kit/modules && exec "$@"' \
		"$prefix/share/p11-kit/modules" "$@"
}
if ! p11kit_ns true 2>/dev/null; then
	skip "install: p11-kit list-modules" "no mount namespace here (unshare -m refused)"
else
	if p11kit_ns p11-kit list-modules 2>&1 | grep -q "token: v-m1"; then
		pass "install: p11-kit list-modules shows the virtual slot"
	else
		fail "install: p11-kit list-modules shows the virtual slot"
	fi
	proxy=$(ls /usr/lib/*/p11-kit-proxy.so 2>/dev/null | head -1)
	if p11kit_ns pkcs11-tool --module "$proxy" -L 2>&1 | grep -q "token label *: v-m1"; then
		pass "install: p11-kit-proxy.so serves the virtual slot"
	else
		fail "install: p11-kit-proxy.so serves the virtual slot"
	fi
fi

# make uninstall with the same PREFIX leaves no file behind, and no /etc/p11proxy of ours.
if make -s -C "$SRCDIR" O="$BUILD" uninstall PREFIX="$prefix" >"$TMP/log" 2>&1 &&
	[ -z "$(files_in "$prefix")" ] && [ ! -e "$prefix/etc/p11proxy" ]; then
	pass "install: make uninstall PREFIX=... removes every file"
else
	fail "install: make uninstall PREFIX=... removes every file" \
		"left: $(files_in "$prefix" | tr '\n' ' ') $(tail -2 "$TMP/log")"
fi
