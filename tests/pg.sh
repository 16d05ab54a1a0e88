# A private PostgreSQL server for a suite (sourced after tests/lib.sh).
#
#   pg_start DIR      initdb + pg_ctl start in DIR (DIR/data; the Unix socket in DIR, no TCP),
#                     as the `postgres` system user when run as root (PostgreSQL refuses root),
#                     as the caller otherwise; adds pg_stop to the suite's EXIT trap; creates
#                     the database "p11proxy". Returns non-zero (with a reason in PG_WHY)
#                     when no server can be had.
#   pg_stop [MODE]    stops it (fast, or MODE: immediate); safe to call twice.
#   pg_restart        starts it again after a stop (same data).
#   pg_uri [USER [DB]] the postgresql:// URI for USER (default: the superuser) and DB
#                     (default: p11proxy), through the socket directory.
#   pg_psql SQL...    runs SQL as the superuser on "p11proxy" (psql, stops at the first error).
#   pg_passfile FILE USER PASSWORD...  writes a libpq passfile (0600) with one line per pair.
#
# Authentication: the superuser (PG_SUPER) is trusted over the socket (the socket is in the
# test's own directory); every other role needs its password (scram-sha-256), which the
# tests give through a passfile. Nothing is installed here: tests/install-deps.sh does that.

PG_SUPER=p11p_super
PG_DB=p11proxy
PG_PORT=5432
PG_DIR=
PG_BIN=
PG_AS=()

_pg_as() {
	"${PG_AS[@]}" "$@"
}

pg_start() {
	PG_DIR=$1
	PG_WHY=
	PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
		PG_WHY="no PostgreSQL server (tests/install-deps.sh installs it)"
		return 1
	fi
	mkdir -p "$PG_DIR" || return 1
	PG_AS=()
	if [ "$(id -u)" -eq 0 ]; then
		if ! id postgres >/dev/null 2>&1; then
			PG_WHY="running as root and no postgres user to run the server"
			return 1
		fi
		PG_AS=(runuser -u postgres --)
		chown postgres: "$PG_DIR"
		# The server's user must reach its directory: the test's temp dirs above it get
		# search permission only (no listing).
		local d
		d=$(dirname "$PG_DIR")
		while [ "$d" != / ]; do
			case $d in "${TMPDIR:-/tmp}" | /tmp) break ;; esac
			chmod o+x "$d"
			d=$(dirname "$d")
		done
	fi
	if ! _pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_SUPER" -A trust \
		-E UTF8 --locale=C.UTF-8 --no-instructions \
		>"$PG_DIR/initdb.log" 2>&1; then
		PG_WHY="initdb failed: $(tail -n 3 "$PG_DIR/initdb.log" | tr '\n' ' ')"
		return 1
	fi
	# The superuser without a password, on the socket only; everybody else with one.
	cat >"$PG_DIR/data/pg_hba.conf" <<HBA
local all $PG_SUPER trust
local all all scram-sha-256
HBA
	cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$PG_DIR'
unix_socket_permissions = 0777
port = $PG_PORT
fsync = on
synchronous_commit = on
shared_buffers = 16MB
max_connections = 40
logging_collector = off
CONF
	[ -n "${PG_AS[*]}" ] && chown postgres: "$PG_DIR/data/pg_hba.conf"
	if ! _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
		>/dev/null 2>&1; then
		PG_WHY="pg_ctl start failed: $(tail -n 3 "$PG_DIR/server.log" | tr '\n' ' ')"
		return 1
	fi
	# Stopped whatever happens to the suite (the suite's own trap goes on running after).
	local prev
	prev=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
	# shellcheck disable=SC2064
	trap "pg_stop immediate; $prev" EXIT
	_pg_psql_db postgres -c "CREATE DATABASE $PG_DB" >/dev/null || {
		PG_WHY="createdb failed"
		return 1
	}
}

pg_stop() {
	[ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ] || return 0
	_pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m "${1:-fast}" -w -t 30 stop >/dev/null 2>&1
}

pg_restart() {
	_pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
		>/dev/null 2>&1
}

pg_uri() {
	echo "postgresql:///${2:-$PG_DB}?host=$PG_DIR&port=$PG_PORT&user=${1:-$PG_SUPER}"
}

_pg_psql_db() {
	local db=$1
	shift
	PGPASSFILE=$PG_DIR/no-passfile "$PG_BIN/psql" -X -q -w -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" \
		-U "$PG_SUPER" -d "$db" "$@"
}

pg_psql() {
	_pg_psql_db "$PG_DB" -At -c "$*"
}

pg_passfile() {
	local file=$1
	shift
	(
		umask 077
		: >"$file"
		while [ $# -ge 2 ]; do
			echo "*:*:*:$1:$2" >>"$file"
			shift 2
		done
	)
}
