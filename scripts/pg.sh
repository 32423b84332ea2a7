# Sourced by the other scripts: a private PostgreSQL cluster that listens only
# on a Unix socket in a folder of its own, started as the invoking user, or as
# "postgres" when that user is root (PostgreSQL refuses to run as root); and
# waiting for, and stopping, the server started against it.

pg_bindir() {
	if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return 0; fi
	local dir
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
	done
	if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
	echo "no PostgreSQL server binaries found: install them (Debian: apt-get install postgresql) or set PG_BIN to the folder holding initdb" >&2
	return 1
}

# as_pg runs a command as the user that owns the cluster.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_init DATADIR SOCKETDIR [throwaway]: create the cluster if DATADIR has none.
# A throwaway cluster trades durability for speed; a dev cluster keeps it.
pg_init() {
	local data=$1 sock=$2 mode=${3:-}
	local bin; bin=$(pg_bindir) || return 1
	mkdir -p "$sock"
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$sock"
		if ! runuser -u postgres -- test -x "$(dirname "$data")"; then
			echo "the postgres user cannot reach $(dirname "$data"): move the checkout somewhere every user can read (not under /root), or run as another user" >&2
			return 1
		fi
	fi
	if [ -f "$data/PG_VERSION" ]; then return 0; fi
	mkdir -p "$data"
	if [ "$(id -u)" = 0 ]; then chown postgres: "$data"; fi
	chmod 700 "$data"
	as_pg "$bin/initdb" -D "$data" -U todo -A trust -E UTF8 --no-locale ${mode:+--no-sync} >"$data.initdb.log" 2>&1 || {
		cat "$data.initdb.log" >&2
		return 1
	}
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$sock'"
		if [ "$mode" = throwaway ]; then
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		fi
	} | as_pg tee -a "$data/postgresql.conf" >/dev/null
}

# pg_start DATADIR: start the cluster and wait until it accepts connections.
pg_start() {
	local data=$1
	local bin; bin=$(pg_bindir) || return 1
	as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null || {
		echo "PostgreSQL did not start; its log:" >&2
		tail -n 20 "$data/server.log" >&2
		return 1
	}
}

# pg_stop DATADIR: stop the cluster if it is running.
pg_stop() {
	local data=$1
	local bin; bin=$(pg_bindir) || return 1
	if [ -f "$data/postmaster.pid" ]; then
		as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
	fi
}

# pg_socket_dir PREFERRED: PREFERRED when a socket path in it fits the
# 107-byte Unix limit, else a fresh folder under /tmp.
pg_socket_dir() {
	local preferred=$1
	if [ ${#preferred} -le 80 ]; then echo "$preferred"; else mktemp -d /tmp/todo-pg.XXXXXX; fi
}

# wait_ready BASE_URL PID [LOG]: wait up to 10 s for BASE_URL/readyz to
# answer 200. Fails, showing LOG when given, if the server exits or never
# becomes ready.
wait_ready() {
	local base=$1 pid=$2 log=${3:-}
	for _ in $(seq 1 100); do
		curl -fs "$base/readyz" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "the server did not become ready${log:+; its log:}" >&2
	if [ -n "$log" ]; then cat "$log" >&2; fi
	return 1
}

# stop_server PID: SIGTERM (which drains) and wait; nothing if PID is empty.
stop_server() {
	if [ -n "${1:-}" ]; then
		kill -TERM "$1" 2>/dev/null || true
		wait "$1" 2>/dev/null || true
	fi
}

# dev_paths sets, for the checkout in the current folder, the variables
# make run and make clean-dev share: dev (the checkout's .dev/, holding the
# secret and the binary) and dev_data (the folder holding the cluster's
# pgdata/ and socket). dev_data is dev itself unless the script runs as
# root and the postgres user cannot reach the checkout (a checkout under
# /root, or in a mode-700 folder): then it is a folder under /var/tmp named
# after the checkout's path, owned by postgres, mode 700, so two checkouts
# never share a cluster.
dev_paths() {
	dev=$PWD/.dev
	dev_data=$dev
	if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
		local key
		key=$(printf '%s' "$PWD" | sha256sum | cut -c1-12)
		dev_data=/var/tmp/todo-backend-dev-$key
	fi
}

# free_port: a TCP port nothing listens on now, below the kernel's
# ephemeral range, so that no outgoing connection holds it either (a busy
# test opens thousands of those).
free_port() {
	local port low
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	while :; do
		port=$((10000 + RANDOM % (low - 10000)))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
	done
}
