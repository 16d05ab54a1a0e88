# make install into a temp prefix; the module exports one symbol; p11-kit sees the virtual slots.
[ "$MODE" = normal ] || { skip "install" "normal mode only"; return 0; }
mk_tmp
softhsm_setup "$TMP" m1 || { fail "install: softhsm setup"; return; }
proxy_conf "$TMP/proxy.yaml" m1
prefix=$TMP/prefix

if make -s -C "$SRCDIR" O="$BUILD" install PREFIX="$prefix" SYSCONFDIR="$prefix/etc" >"$TMP/log" 2>&1; then
	pass "install: make install PREFIX=..."
else
	fail "install: make install PREFIX=..." "$(tail -3 "$TMP/log")"
	return
fi
missing=""
for f in lib/pkcs11/libproxy.so bin/p11proxy include/p11proxy.h share/man/man5/proxy.yaml.5 \
	share/man/man7/p11proxy.7 share/man/man8/p11proxy.8 share/p11-kit/modules/p11proxy.module \
	etc/p11proxy/proxy.yaml.example lib/pkgconfig/p11proxy.pc; do
	[ -f "$prefix/$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then pass "install: every file in place"; else fail "install: files" "missing:$missing"; fi

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
	return 0
fi
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
