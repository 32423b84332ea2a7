#!/usr/bin/env bash
# neon-stack.sh CMD...: run CMD beside a local stand-in for Neon, then tear
# it down. It makes a throwaway CA and server certificate (and a second,
# wrong CA) with openssl; starts a PostgreSQL cluster with ssl=on,
# password_encryption=scram-sha-256 and a pg_hba.conf whose only TCP line
# is "hostssl ... scram-sha-256" (like Neon, plain TCP is refused); and a
# PgBouncer in front of it that takes TLS and SCRAM from clients and
# speaks TLS to PostgreSQL, with one database in transaction mode (as
# Neon's -pooler hosts) and one in session mode. CMD gets the TEST_NEON_*
# variables below; the tests in neon_test.go read them. pgbouncer and
# openssl are installed with apt-get when missing (as root).
#
#   TEST_NEON_DIRECT    postgres://neon:...@127.0.0.1:PORT/neondb (add ?sslmode=...)
#   TEST_NEON_POOLED_TX, TEST_NEON_POOLED_SESSION   the same through PgBouncer
#   TEST_NEON_CA, TEST_NEON_WRONG_CA   PEM files
#   TEST_NEON_PG_CTL    a command that takes stop|start (PostgreSQL behind PgBouncer)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "neon-stack: ${need[*]} needed: apt-get install ${need[*]}" >&2
		exit 1
	fi
	echo "neon-stack: installing ${need[*]}" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
bin=$(pg_bindir)

tmp=$(mktemp -d /tmp/todo-neon.XXXXXX)
chmod 755 "$tmp"
cleanup() {
	if [ -s "$tmp/bouncer/pgbouncer.pid" ]; then
		kill "$(cat "$tmp/bouncer/pgbouncer.pid")" 2>/dev/null || true
		for _ in $(seq 1 50); do [ -e "$tmp/bouncer/pgbouncer.pid" ] || break; sleep 0.1; done
	fi
	pg_stop "$tmp/data"
	rm -rf "$tmp"
}
trap cleanup EXIT

# free_port: a TCP port nothing listens on now.
free_port() {
	local port
	while :; do
		port=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
	done
}

# The certificates: a CA, the server's (for localhost and 127.0.0.1), and
# a CA that signed nothing here.
tls=$tmp/tls
mkdir "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=todo-test CA" \
	-keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=todo-test wrong CA" \
	-keyout "$tls/wrong-ca.key" -out "$tls/wrong-ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
	-keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tls/ext.cnf"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
	-days 2 -extfile "$tls/ext.cnf" -out "$tls/server.pem" 2>/dev/null
chmod 600 "$tls/server.key"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$tls"; fi
chmod 755 "$tls"
chmod 644 "$tls/ca.pem" "$tls/wrong-ca.pem" "$tls/server.pem"

pg_port=$(free_port)
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
pg_init "$tmp/data" "$tmp/sock" throwaway
{
	echo "listen_addresses = '127.0.0.1'"
	echo "port = $pg_port"
	echo "ssl = on"
	echo "ssl_cert_file = '$tls/server.pem'"
	echo "ssl_key_file = '$tls/server.key'"
	echo "password_encryption = 'scram-sha-256'"
	echo "max_connections = 200"
} | as_pg tee -a "$tmp/data/postgresql.conf" >/dev/null
# Local administration over the socket; over TCP, TLS and SCRAM or nothing.
printf 'local all todo trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n' | as_pg tee "$tmp/data/pg_hba.conf" >/dev/null
pg_start "$tmp/data"
"$bin/psql" -h "$tmp/sock" -p "$pg_port" -U todo -d postgres -qc "CREATE ROLE neon LOGIN CREATEDB PASSWORD '$password'"
"$bin/createdb" -h "$tmp/sock" -p "$pg_port" -U todo -O neon neondb

bouncer_port=$(free_port)
mkdir "$tmp/bouncer"
printf '"neon" "%s"\n' "$password" >"$tmp/bouncer/userlist.txt"
cat >"$tmp/bouncer/pgbouncer.ini" <<INI
[databases]
neondb_tx = host=127.0.0.1 port=$pg_port dbname=neondb pool_mode=transaction
neondb_session = host=127.0.0.1 port=$pg_port dbname=neondb pool_mode=session pool_size=20

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $tmp/bouncer/userlist.txt
client_tls_sslmode = require
client_tls_cert_file = $tls/server.pem
client_tls_key_file = $tls/server.key
server_tls_sslmode = verify-full
server_tls_ca_file = $tls/ca.pem
default_pool_size = 4
max_client_conn = 400
logfile = $tmp/bouncer/pgbouncer.log
pidfile = $tmp/bouncer/pgbouncer.pid
INI
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$tmp/bouncer"; fi
as_pg "$pgbouncer" -d "$tmp/bouncer/pgbouncer.ini" </dev/null >/dev/null 2>&1 || { cat "$tmp/bouncer/pgbouncer.log" >&2; exit 1; }
for _ in $(seq 1 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$bouncer_port") 2>/dev/null && break
	sleep 0.1
done

export TEST_NEON_DIRECT="postgres://neon:$password@127.0.0.1:$pg_port/neondb"
export TEST_NEON_POOLED_TX="postgres://neon:$password@127.0.0.1:$bouncer_port/neondb_tx"
export TEST_NEON_POOLED_SESSION="postgres://neon:$password@127.0.0.1:$bouncer_port/neondb_session"
export TEST_NEON_CA=$tls/ca.pem
export TEST_NEON_WRONG_CA=$tls/wrong-ca.pem
pg_ctl_cmd="$bin/pg_ctl -D $tmp/data -l $tmp/data/server.log -w -m fast"
if [ "$(id -u)" = 0 ]; then pg_ctl_cmd="runuser -u postgres -- $pg_ctl_cmd"; fi
export TEST_NEON_PG_CTL=$pg_ctl_cmd
echo "neon-stack: PostgreSQL (TLS, SCRAM, hostssl only) on 127.0.0.1:$pg_port; $("$pgbouncer" --version | head -1) on 127.0.0.1:$bouncer_port" >&2
status=0
"$@" || status=$?
exit $status
