# The virtual-key suites on PostgreSQL (issue 11): 56-vkeys (through the module) and
# 57-keys-cli (the CLI) again, with P11P_TEST_INDEX=pg: tests/lib.sh's proxy_conf gives each
# configuration a fresh database on one private server (tests/pg.sh) started here, once.
# The checks that read the SQLite file itself are skipped by name in those suites.
# Under valgrind only 57-keys-cli runs (56 runs under valgrind on SQLite already; its
# module processes would take minutes more here).
# Sourced by tests/run.sh with tests/lib.sh loaded (BUILD, MODE, SRCDIR).

# shellcheck source=tests/pg.sh
. "$SRCDIR/tests/pg.sh"
PGV_TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11proxy-test.XXXXXX")
trap 'rm -rf "$PGV_TMP"' EXIT
if ! pg_start "$PGV_TMP/pg"; then
	fail "vkeys-pg: private PostgreSQL server" "$PG_WHY"
	return 0 2>/dev/null || exit 0
fi
export P11P_TEST_INDEX=pg
if [ "$MODE" = valgrind ]; then
	skip "vkeys-pg: 56-vkeys" "valgrind mode runs 57-keys-cli only"
else
	# shellcheck source=tests/suites/56-vkeys.sh
	(. "$SRCDIR/tests/suites/56-vkeys.sh")
fi
# shellcheck source=tests/suites/57-keys-cli.sh
(. "$SRCDIR/tests/suites/57-keys-cli.sh")
