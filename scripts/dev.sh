#!/usr/bin/env bash
# make run: a local PostgreSQL cluster (created the first time, its data
# kept), a dev secret kept in .dev/, and the server on :8000. The cluster
# lives in .dev/ too, or, when the postgres user cannot reach the checkout
# (root in /root or a mode-700 folder), in a folder of its own under
# /var/tmp (see dev_paths in pg.sh). Ctrl-C or SIGTERM stops the server and
# the cluster and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

dev_paths
port=${PORT:-8000}
bin=$(pg_bindir)

# A second make run says so in one line instead of failing obscurely.
if [ -f "$dev_data/pgdata/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dev_data/pgdata" status >/dev/null 2>&1; then
	echo "make run: this checkout's PostgreSQL is already running ($dev_data/pgdata): another make run is up; stop it with Ctrl-C (or: $(if [ "$(id -u)" = 0 ]; then echo "runuser -u postgres -- "; fi)$bin/pg_ctl -D $dev_data/pgdata stop)" >&2
	exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	echo "make run: port $port is already in use (another make run?); stop that, or choose another with PORT=9000 make run" >&2
	exit 1
fi

mkdir -p "$dev"
if [ "$dev_data" = "$dev" ]; then
	chmod 711 "$dev" # the postgres user (when started as root) must reach pgdata/
else
	mkdir -p "$dev_data"
	chown postgres: "$dev_data"
	chmod 700 "$dev_data"
fi
sock=$(pg_socket_dir "$dev_data/sock")

if [ ! -s "$dev/secret" ]; then
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dev/secret")
fi

go build -o "$dev/todo-backend" .

server_pid=
cleanup() {
	trap - EXIT INT TERM
	stop_server "$server_pid"
	pg_stop "$dev_data/pgdata"
	case $sock in "$dev_data"/*) ;; *) rm -rf "$sock" ;; esac
	echo "stopped the server and the local PostgreSQL" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A socket folder from an earlier run may be stale; the cluster keeps
# its data either way.
if [ -f "$dev_data/pgdata/PG_VERSION" ] && ! grep -q "^unix_socket_directories = '$sock'" "$dev_data/pgdata/postgresql.conf"; then
	echo "unix_socket_directories = '$sock'" | as_pg tee -a "$dev_data/pgdata/postgresql.conf" >/dev/null
fi
pg_init "$dev_data/pgdata" "$sock"
pg_start "$dev_data/pgdata"
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

todo-backend is running on http://localhost:$port (data in $dev_data/pgdata). Try:

  curl -H 'Authorization: Bearer $token' http://localhost:$port/api/tasks

Ctrl-C stops the server and the local PostgreSQL; make clean-dev removes the data.

MSG
wait "$server_pid" || true
server_pid=
