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

# Rendering bugs that mandoc -Tlint does not see, in the text as mandoc -Tutf8 renders it at
# the default width (a terminal of 80 columns). See the comments for the bug each catches.
# Overstrike (bold, underline) removed, as col -b would.
plain() { LC_ALL=C.UTF-8 sed 's/.\x08//g'; }
render() { mandoc -Tutf8 "$@" | plain; }
rendered_ok() { # NAME PAGE OFFENDING-LINES...: pass when there are none
	local name=$1 page=$2
	shift 2
	if [ -z "$*" ]; then
		pass "docs: $(basename "$page"): $name"
	else
		fail "docs: $(basename "$page"): $name" "$(printf '%s' "$*" | head -3 | tr '\n' '|')"
	fi
}
for page in "$SRCDIR"/man/*.[578]; do
	text=$(render "$page")
	# A macro line run into the text before it ("writers..It Pa /var/... Ns Ar LABEL"): macro
	# names, dot-prefixed requests or roff escapes printed as words.
	rendered_ok "no mdoc macro or escape printed as text" "$page" "$(echo "$text" | grep -nE \
		'(^|[^A-Za-z0-9_])(Ns|Ar|Pa|Fl|Cm|Ic|Xr|Ql|Pq|Dq|Sq|Qq|Ev|Dv|Va|Bd|Ed|Bl|El|Pp|Nm|Oo|Oc|Po|Pc|Op|Fn|Fa|Xo|Xc|Ta)([^A-Za-z0-9_]|$)|\.(It|No|Em|Sy|Li)( |$)|\\[&e(]|(^|[^.])\.\.([^.]|$)')"
	# .Fn given prose as arguments: "*Final(of, those, operations)".
	rendered_ok "no prose as .Fn arguments" "$page" \
		"$(echo "$text" | grep -nE '[A-Za-z0-9_*]\([a-z]+(, [a-z]+)+\)')"
	# A list of PKCS#11 functions where only the first went through .Fn: "C_Sign(), C_Verify".
	rendered_ok "function lists all with ()" "$page" \
		"$(echo "$text" | grep -nE '\(\),? (and |or )?C_[A-Za-z]+([^(A-Za-z_]|$)')"
	# Text wider than the terminal: an unbreakable SYNOPSIS line, a literal display too wide.
	rendered_ok "no line wider than 78 columns" "$page" \
		"$(echo "$text" | LC_ALL=C.UTF-8 grep -nE '^.{79,}$')"
	# A quote macro inside another enclosure runs to the end of the line: in
	# ".Pq as Ql p11proxy gen-fragment No writes it" the quote takes "writes it" too.
	rendered_ok "no quote macro nested in an enclosure and ended by .No" "$page" \
		"$(grep -nE '^\.[A-Z][a-z].* (Ql|Sq|Dq|Qq) .* No ' "$page")"
	# A one-line display (.Dl) that does not fit is wrapped like prose: "$ cmd --opt" then "--x"
	# on its own line, which reads as two commands.
	wrapped=""
	while IFS= read -r dl; do
		one=$(printf '.Dd January 1, 2000\n.Dt X 1\n.Os\n.Sh X\n%s\n' "$dl" |
			mandoc -Tutf8 -Owidth=1000 | plain | sed -n 's/^  *//p' | head -1)
		[ -n "$one" ] && ! printf '%s\n' "$text" | grep -qF -- "$one" && wrapped="$wrapped$dl
"
	done < <(grep '^\.Dl ' "$page")
	rendered_ok "every .Dl display fits on one line" "$page" "$wrapped"
	# groff (what man(1) uses on Debian) reports lines it cannot break.
	if command -v groff >/dev/null 2>&1; then
		rendered_ok "groff -mdoc -ww: no warnings" "$page" \
			"$(groff -mdoc -Tutf8 -ww -z "$page" 2>&1)"
	fi
done

# p11proxy(8) SYNOPSIS: one command per line ("policy reset slot gen-fragment ..." ran two
# together), and every command of `p11proxy help` has one.
commands=$("$CLI" help 2>/dev/null | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\)  .*/\1/p')
if [ "$(echo "$commands" | wc -w)" -lt 5 ]; then
	skip "docs: p11proxy(8) SYNOPSIS against p11proxy help" "no command list from $CLI help"
else
	synopsis=$(mandoc -Tutf8 -Owidth=1000 "$SRCDIR/man/p11proxy.8" | plain |
		sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed -n 's/^ *\(p11proxy .*\)/\1/p')
	bad=""
	missing=""
	while IFS= read -r entry; do
		n=0
		for w in $(echo "$entry" | tr '[]|' '   '); do
			echo "$commands" | grep -qxF -- "$w" && n=$((n + 1))
		done
		[ "$n" -gt 1 ] && bad="$bad [$entry]"
	done <<<"$synopsis"
	for c in $commands; do
		echo "$synopsis" | tr '[]|' '   ' | grep -qE "^p11proxy( +-[^ ]+( +[a-z]+)?)* +$c( |$)" ||
			missing="$missing $c"
	done
	if [ -z "$bad" ]; then
		pass "docs: p11proxy(8) SYNOPSIS: one command per line"
	else
		fail "docs: p11proxy(8) SYNOPSIS: one command per line" "$bad"
	fi
	if [ -z "$missing" ]; then
		pass "docs: p11proxy(8) SYNOPSIS: every command of p11proxy help"
	else
		fail "docs: p11proxy(8) SYNOPSIS: every command of p11proxy help" "missing:$missing"
	fi
fi
