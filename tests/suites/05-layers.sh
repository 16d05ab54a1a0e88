# shellcheck shell=bash
# The shape of lib/ (issue 9): rooms depend downward only, and every call into
# a vendor library goes through the one backend-call layer.
[ "$MODE" = normal ] || return 0

if out=$("$SRCDIR/tests/layers.sh" "$SRCDIR" 2>&1); then
	pass "layers: every include of lib/ goes down a room; tools/ uses public headers only"
else
	fail "layers: includes that go up a room" "$out"
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
