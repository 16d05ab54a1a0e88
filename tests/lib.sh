# Shared helpers for the suites in tests/suites/. Sourced by tests/run.sh.
# Environment: BUILD (absolute build dir), MODE (normal|asan|valgrind), SRCDIR, RESULTS.

SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
TEST_USER_PIN=1234
TEST_SO_PIN=5678

pass() {
	echo "PASS: $1"
	echo "pass $1" >>"$RESULTS"
}

fail() {
	echo "FAIL: $1${2:+ ($2)}"
	echo "fail $1" >>"$RESULTS"
}

skip() {
	echo "SKIP: $1 ($2)"
	echo "skip $1" >>"$RESULTS"
}

# check NAME COMMAND...: pass when the command exits 0, fail otherwise.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name" "exit $?"; fi
}

# A fresh temp dir, removed when the suite's subshell exits.
mk_tmp() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11proxy-test.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
}

# softhsm_setup DIR LABEL...: a hermetic SoftHSM2 in DIR with one token per
# label (user PIN $TEST_USER_PIN, SO PIN $TEST_SO_PIN); exports SOFTHSM2_CONF.
softhsm_setup() {
	local dir=$1
	shift
	mkdir -p "$dir/tokens"
	cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
	export SOFTHSM2_CONF=$dir/softhsm2.conf
	for label in "$@"; do
		softhsm2-util --init-token --free --label "$label" --pin "$TEST_USER_PIN" \
			--so-pin "$TEST_SO_PIN" >/dev/null || return 1
	done
}

# proxy_conf FILE LABEL...: a proxy.yaml with one virtual slot per SoftHSM2
# token label; virtual slot "v-LABEL", no member PIN (application PIN passes).
# Its state_dir is FILE's directory, so virtual keys are on (index
# DIR/keys.db, default policy: write_back false, scan all). PROXY_POLICY
# (e.g. "{write_back: true, scan: owned}") sets every slot's `policy:`.
# PROXY_INDEX is set to the store the configuration uses.
# P11P_TEST_INDEX=pg: the store is a fresh database on a private PostgreSQL
# server (tests/pg.sh; started once per suite, or by the caller with pg_start),
# one per configuration directory, `index: postgresql://...` as its superuser.
proxy_conf() {
	local file=$1 index=
	shift
	PROXY_INDEX=$(cd "$(dirname "$file")" && pwd)/keys.db
	if [ "${P11P_TEST_INDEX:-}" = pg ]; then
		if [ -z "${PG_DIR:-}" ]; then
			# shellcheck source=tests/pg.sh
			. "$SRCDIR/tests/pg.sh"
			pg_start "$(mktemp -d "${TMPDIR:-/tmp}/p11proxy-pg.XXXXXX")" || {
				echo "proxy_conf: no PostgreSQL: $PG_WHY" >&2
				return 1
			}
		fi
		# One database per configuration directory (as one keys.db per directory).
		local db
		db=p11p_$(printf '%s' "$PROXY_INDEX" | sha256sum | cut -c1-16)
		if [ "$(pg_psql "SELECT count(*) FROM pg_database WHERE datname = '$db'")" != 1 ]; then
			pg_psql "CREATE DATABASE $db" >/dev/null || return 1
		fi
		index=$(pg_uri "" "$db")
		PROXY_INDEX=$index
	fi
	{
		echo "backends:"
		echo "  - name: softhsm"
		echo "    module: $SOFTHSM_MODULE"
		echo "slots:"
		for label in "$@"; do
			echo "  - label: v-$label"
			[ -n "${PROXY_POLICY:-}" ] && echo "    policy: $PROXY_POLICY"
			echo "    members:"
			echo "      - backend: softhsm"
			echo "        token_label: $label"
		done
		# Last, so that suites' line:column expectations hold.
		echo "state_dir: $(cd "$(dirname "$file")" && pwd)"
		[ -z "$index" ] || echo "index: $index"
	} >"$file"
	export P11PROXY_CONF=$file
}

# run_prog PROGRAM ARGS...: runs a test program of ours, under valgrind in
# valgrind mode (errors and definite leaks fail the run).
# Under valgrind OpenSSL runs without AES-NI and PCLMULQDQ: its AES-GCM assembly
# builds the last partial block in a stack buffer whose unused bytes memcheck
# cannot follow, and reports the ciphertext as uninitialised where it is not.
run_prog() {
	if [ "$MODE" = valgrind ]; then
		OPENSSL_ia32cap="${OPENSSL_ia32cap:-~0x200000200000000}" valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
			--suppressions="$SRCDIR/tests/valgrind.supp" "$@"
	else
		"$@"
	fi
}

# cli ARGS...: the p11proxy CLI of this build (under valgrind in valgrind mode).
cli() {
	run_prog "$CLI" "$@"
}

# expect_cli NAME EXIT PATTERN ARGS...: `cli ARGS` exits EXIT and its output (stdout and
# stderr) matches PATTERN (grep).
expect_cli() {
	local name=$1 want=$2 pat=$3 rc
	shift 3
	cli "$@" >"$TMP/out" 2>&1
	rc=$?
	if [ "$rc" -eq "$want" ] && grep -q -- "$pat" "$TMP/out"; then
		pass "$name"
	else
		fail "$name" "exit $rc, want $want; $(head -c 400 "$TMP/out" | tr '\n' '|')"
	fi
}

# run_prog_timeout SECONDS PROGRAM ARGS...: run_prog under timeout(1), for programs that
# may hang (exit 124 when they ran out of time; the whole process group is ended).
run_prog_timeout() {
	local limit=$1
	shift
	# shellcheck disable=SC2016
	timeout -k 5 "$limit" bash -c '. "$SRCDIR/tests/lib.sh"; run_prog "$@"' run_prog "$@"
}

# Sanitizer builds: leaks inside SoftHSM2 / p11-kit are theirs, not ours.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$SRCDIR/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

PROXY_MODULE=$BUILD/libproxy.so
CLI=$BUILD/p11proxy
