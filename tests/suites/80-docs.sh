# The manual pages stay lint-clean, and the README names the test command CI runs.
[ "$MODE" = normal ] || { skip "docs" "normal mode only"; return 0; }
for page in "$SRCDIR"/man/*.[578]; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1)
	if [ -z "$out" ]; then pass "docs: mandoc -Tlint $(basename "$page")"; else fail "docs: mandoc -Tlint $(basename "$page")" "$out"; fi
done
if grep -q '^make check$' "$SRCDIR/.ci/run" && grep -q 'make check ' "$SRCDIR/README.md"; then
	pass "docs: .ci/run runs the README's make check"
else
	fail "docs: .ci/run runs the README's make check"
fi
