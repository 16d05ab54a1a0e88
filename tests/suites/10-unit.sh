# Unit tests: every Check program in $BUILD/tests/test_*, one result each.
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).
#
# Check forks a child per test by default. Under valgrind and the sanitizers
# the code under test must run in the measured process itself, so those modes
# use CK_FORK=no (valgrind only follows the parent; a forked child's leak or
# error would otherwise be reported as a plain test failure, or not at all).
case $MODE in
valgrind | asan) export CK_FORK=no ;;
esac

found=0
for prog in "$BUILD"/tests/test_*; do
	if [ ! -f "$prog" ] || [ ! -x "$prog" ]; then continue; fi
	found=1
	name=unit/$(basename "$prog")
	log=$(mktemp)
	if run_prog "$prog" >"$log" 2>&1; then
		pass "$name"
	else
		rc=$?
		sed 's/^/    /' "$log"
		fail "$name" "exit $rc"
	fi
	rm -f "$log"
done
if [ "$found" -eq 0 ]; then
	fail unit "no test programs in $BUILD/tests (run make tests)"
fi
