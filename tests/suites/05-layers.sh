# shellcheck shell=bash
# The shape of lib/ (issue 9): rooms depend downward only, and every call into
# a vendor library goes through the one backend-call layer.
[ "$MODE" = normal ] || return 0

if out=$("$SRCDIR/tests/layers.sh" "$SRCDIR" 2>&1); then
	pass "layers: every include of lib/ goes down a room; tools/ uses public headers only"
else
	fail "layers: includes that go up a room" "$out"
fi

mk_tmp
# The check itself, on a tree of two files: the core's private header from a
# room above is refused, from lib/virt it is not.
mkdir -p "$TMP/layers/lib/virt" "$TMP/layers/lib/vkeys" "$TMP/layers/tools"
printf '#include "virt/core.h"\n' >"$TMP/layers/lib/virt/a.c"
printf '#include "virt/virt.h"\n' >"$TMP/layers/lib/vkeys/b.c"
if ! out=$("$SRCDIR/tests/layers.sh" "$TMP/layers" 2>&1); then
	fail "layers: lib/virt may include virt/core.h" "$out"
else
	printf '#include "virt/core.h"\n' >>"$TMP/layers/lib/vkeys/b.c"
	if out=$("$SRCDIR/tests/layers.sh" "$TMP/layers" 2>&1) ||
		! grep -q 'lib/vkeys/b.c: includes virt/core.h' <<<"$out"; then
		fail "layers: an include of virt/core.h from above lib/virt is not refused" "$out"
	else
		pass "layers: the core's structs (virt/core.h) are refused to the rooms above"
	fi
fi
# A definition of the core's slot or state outside virt/core.h is refused.
mkdir -p "$TMP/layers2/lib/virt"
printf 'struct p11p_vslot {\n\tint id;\n};\n' >"$TMP/layers2/lib/virt/core.h"
printf 'struct p11p_vslot_head {\n\tint id;\n};\n' >"$TMP/layers2/lib/virt/virt.h"
if ! out=$("$SRCDIR/tests/layers.sh" "$TMP/layers2" 2>&1); then
	fail "layers: virt/core.h may define the core's structs" "$out"
else
	printf 'struct p11p_state {\n\tint n;\n};\n' >>"$TMP/layers2/lib/virt/virt.h"
	if out=$("$SRCDIR/tests/layers.sh" "$TMP/layers2" 2>&1) ||
		! grep -q 'lib/virt/virt.h: defines a struct of the core' <<<"$out"; then
		fail "layers: a definition of struct p11p_state outside virt/core.h is not refused" "$out"
	else
		pass "layers: the core's slot and state are defined in virt/core.h alone"
	fi
fi

out=$(cd "$SRCDIR" && grep -rn 'fl->C_\|fl\.C_' lib tools | grep -v '^lib/backend/')
if [ -z "$out" ]; then
	pass "layers: no vendor function pointer is called outside lib/backend"
else
	fail "layers: vendor calls outside the backend layer" "$out"
fi

# The vendor tables are called only by the generated wrappers (the FUNCTIONS
# table's `x->be->fl.NAME ARGS`): no C_ function is called through one by name.
out=$(cd "$SRCDIR" && grep -rnE '(fl\.|fl->)C_[A-Za-z]+ *\(' lib tools)
if [ -z "$out" ]; then
	pass "layers: only the generated wrappers call through a vendor table"
else
	fail "layers: vendor calls by name" "$out"
fi
