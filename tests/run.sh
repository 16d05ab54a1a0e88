#!/usr/bin/env bash
# Runs every suite in tests/suites/ (in name order) against one build.
#   tests/run.sh BUILD_DIR MODE      MODE: normal | asan | valgrind
# Each suite is a bash file sourced in a subshell with tests/lib.sh loaded; it
# reports through `pass NAME` / `fail NAME [why]` / `skip NAME why`.
set -u
export BUILD=${1:-build}
export MODE=${2:-normal}
export SRCDIR
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$SRCDIR/$BUILD ;; esac
RESULTS=$(mktemp)
: >"$RESULTS.times"
export RESULTS
trap 'rm -f "$RESULTS" "$RESULTS.times"' EXIT

# Hermetic: nothing may appear in the default state directory (every suite uses its own).
STATE_BEFORE=absent
[ -e /var/lib/p11proxy ] && STATE_BEFORE=present

for suite in "$SRCDIR"/tests/suites/*.sh; do
	[ -n "${ONLY:-}" ] && case $(basename "$suite") in *$ONLY*) ;; *) continue ;; esac
	echo "=== $(basename "$suite" .sh) ($MODE)"
	t0=$SECONDS
	(
		# shellcheck source=tests/lib.sh
		. "$SRCDIR/tests/lib.sh"
		# shellcheck disable=SC1090
		. "$suite"
	)
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL: suite $(basename "$suite") exited $rc"
		echo "fail $(basename "$suite")" >>"$RESULTS"
	fi
	# The time each suite takes, for keeping CI within its budget (summed at the end).
	echo "$(basename "$suite" .sh) $((SECONDS - t0))" >>"$RESULTS.times"
done

if [ "$STATE_BEFORE" = absent ] && [ -e /var/lib/p11proxy ]; then
	echo "FAIL: a test wrote to /var/lib/p11proxy (tests must use their own state_dir)"
	echo "fail hermetic: /var/lib/p11proxy left alone" >>"$RESULTS"
fi

passed=$(grep -c '^pass ' "$RESULTS")
failed=$(grep -c '^fail ' "$RESULTS")
skipped=$(grep -c '^skip ' "$RESULTS")
if [ "$failed" -ne 0 ]; then
	echo "--- failures:"
	grep '^fail ' "$RESULTS" | sed 's/^fail /  /'
fi
echo "--- seconds per suite ($MODE), slowest first:"
sort -k2,2nr "$RESULTS.times" | head -n 8 | awk '{printf "  %-22s %5d\n", $1, $2}'
awk '{t += $2} END {printf "  %-22s %5d\n", "(all suites)", t}' "$RESULTS.times"
echo "$MODE: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
