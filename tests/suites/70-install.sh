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
	etc/p11proxy/proxy.yaml.example; do
	[ -f "$prefix/$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then pass "install: every file in place"; else fail "install: files" "missing:$missing"; fi

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
