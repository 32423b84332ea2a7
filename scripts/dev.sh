#!/usr/bin/env bash
# make run: a local PostgreSQL cluster in .dev/ (created the first time, its
# data kept), a dev secret kept beside it, and the server on :8000. Ctrl-C or
# SIGTERM stops the server and the cluster and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

dev=$PWD/.dev
mkdir -p "$dev"
chmod 711 "$dev" # the postgres user (when started as root) must reach pgdata/
sock=$(pg_socket_dir "$dev/sock")
port=${PORT:-8000}

if [ ! -s "$dev/secret" ]; then
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dev/secret")
fi

go build -o "$dev/todo-backend" .

server_pid=
cleanup() {
	trap - EXIT INT TERM
	stop_server "$server_pid"
	pg_stop "$dev/pgdata"
	case $sock in "$dev"/*) ;; *) rm -rf "$sock" ;; esac
	echo "stopped the server and the local PostgreSQL" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A socket folder from an earlier run may be stale; the cluster keeps
# its data either way.
if [ -f "$dev/pgdata/PG_VERSION" ] && ! grep -q "^unix_socket_directories = '$sock'" "$dev/pgdata/postgresql.conf"; then
	echo "unix_socket_directories = '$sock'" | as_pg tee -a "$dev/pgdata/postgresql.conf" >/dev/null
fi
pg_init "$dev/pgdata" "$sock"
pg_start "$dev/pgdata"
bin=$(pg_bindir)
if [ -z "$("$bin/psql" -h "$sock" -U todo -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'todo'")" ]; then
	"$bin/createdb" -h "$sock" -U todo todo
fi

export DATABASE_URL="host=$sock user=todo dbname=todo sslmode=disable"
BETTER_AUTH_SECRET=$(cat "$dev/secret")
export BETTER_AUTH_SECRET
export PORT=$port

"$dev/todo-backend" &
server_pid=$!

wait_ready "http://127.0.0.1:$port" "$server_pid" || exit 1 # its log is above

token=$("$dev/todo-backend" token -ttl 24h dev-user)
cat >&2 <<MSG

todo-backend is running on http://localhost:$port (data in .dev/pgdata). Try:

  curl -H 'Authorization: Bearer $token' http://localhost:$port/api/tasks

Ctrl-C stops the server and the local PostgreSQL.

MSG
wait "$server_pid" || true
server_pid=
