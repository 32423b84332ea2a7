#!/usr/bin/env bash
# neon-stack.sh CMD...: run CMD beside a local stand-in for Neon, then tear
# it down. It makes a throwaway CA and server certificate (and a second,
# wrong CA) with openssl; starts a PostgreSQL cluster with ssl=on,
# password_encryption=scram-sha-256 and a pg_hba.conf whose only TCP line
# is "hostssl ... scram-sha-256" (like Neon, plain TCP is refused); and in
# front of it the poolers below, each taking TLS and SCRAM from clients
# and speaking TLS to PostgreSQL. CMD gets the TEST_NEON_* variables; the
# tests in neon_test.go read them. openssl and Debian's pgbouncer are
# installed with apt-get when missing (as root); PgBouncer 1.21+ comes from
# scripts/pgbouncer.sh (PGBOUNCER names one, else it is built once).
#
#   TEST_NEON_DIRECT    postgres://neon:...@127.0.0.1:PORT/neondb (add ?sslmode=...)
#   TEST_NEON_POOLED_TX, TEST_NEON_POOLED_SESSION   the same through Neon's kind
#                       of pooler: PgBouncer 1.21+ with max_prepared_statements=200,
#                       in transaction mode (as Neon's -pooler hosts) and session mode
#   TEST_NEON_POOLED_TX_EVICTING   the same, with max_prepared_statements=3
#   TEST_NEON_POOLED_TX_UNTRACKED  the same, with max_prepared_statements=0:
#                       a pooler that cannot hold prepared statements
#   TEST_NEON_POOLED_TX_OLD        Debian's PgBouncer (1.18, which cannot hold
#                       them either), in transaction mode; where it cannot be had,
#                       TEST_NEON_NO_OLD_POOLER says why
#   TEST_NEON_LOGIN_RETRY   the poolers' server_login_retry, in seconds
#   TEST_NEON_CA, TEST_NEON_WRONG_CA   PEM files
#   TEST_NEON_PG_CTL    a command that takes stop|start (PostgreSQL behind the poolers)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "neon-stack: installing ${need[*]}" >&2
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	elif [[ " ${need[*]} " == *" openssl "* ]]; then
		echo "neon-stack: openssl needed: apt-get install openssl" >&2
		exit 1
	fi
fi
modern=$(bash scripts/pgbouncer.sh)
old_pooler=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
no_old=
if [ ! -x "$old_pooler" ]; then
	no_old="no Debian pgbouncer installed (apt-get install pgbouncer)"
elif PGBOUNCER=$old_pooler bash scripts/pgbouncer.sh >/dev/null 2>&1; then
	no_old="the distribution's pgbouncer ($("$old_pooler" --version | head -1)) holds prepared statements itself; the untracked pooler stands in for an old one"
fi
bin=$(pg_bindir)
login_retry=15 # PgBouncer's default: how long it waits before logging in again after a failure

tmp=$(mktemp -d /tmp/todo-neon.XXXXXX)
chmod 755 "$tmp"
cleanup() {
	local pidfile
	for pidfile in "$tmp"/bouncer-*/pgbouncer.pid; do
		[ -s "$pidfile" ] || continue
		kill "$(cat "$pidfile")" 2>/dev/null || true
		for _ in $(seq 1 50); do [ -e "$pidfile" ] || break; sleep 0.1; done
	done
	pg_stop "$tmp/data"
	rm -rf "$tmp"
}
trap cleanup EXIT

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

# start_bouncer NAME BINARY MAX_PREPARED|- DATABASES: a PgBouncer in
# $tmp/bouncer-NAME, its port in $bouncer_port. MAX_PREPARED "-" leaves the
# setting out (PgBouncer before 1.21 does not know it); newer ones always
# get it explicitly, since its default changed (0 in 1.22, 200 in 1.24).
start_bouncer() {
	local name=$1 binary=$2 max_prepared=$3 databases=$4
	local dir=$tmp/bouncer-$name
	bouncer_port=$(free_port)
	mkdir "$dir"
	printf '"neon" "%s"\n' "$password" >"$dir/userlist.txt"
	{
		printf '[databases]\n%b\n\n[pgbouncer]\n' "$databases"
		cat <<INI
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
client_tls_sslmode = require
client_tls_cert_file = $tls/server.pem
client_tls_key_file = $tls/server.key
server_tls_sslmode = verify-full
server_tls_ca_file = $tls/ca.pem
default_pool_size = 4
max_client_conn = 400
server_login_retry = $login_retry
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
		if [ "$max_prepared" != - ]; then echo "max_prepared_statements = $max_prepared"; fi
	} >"$dir/pgbouncer.ini"
	if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
	as_pg "$binary" -d "$dir/pgbouncer.ini" </dev/null >/dev/null 2>&1 || { cat "$dir/pgbouncer.log" >&2; exit 1; }
	for _ in $(seq 1 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$bouncer_port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "neon-stack: PgBouncer $name did not start" >&2
	cat "$dir/pgbouncer.log" >&2
	exit 1
}

server="host=127.0.0.1 port=$pg_port dbname=neondb"
tx="neondb_tx = $server pool_mode=transaction"
url() { echo "postgres://neon:$password@127.0.0.1:$1/$2"; }
start_bouncer neon "$modern" 200 "$tx\nneondb_session = $server pool_mode=session pool_size=20"
export TEST_NEON_POOLED_TX=$(url "$bouncer_port" neondb_tx)
export TEST_NEON_POOLED_SESSION=$(url "$bouncer_port" neondb_session)
start_bouncer evicting "$modern" 3 "$tx"
export TEST_NEON_POOLED_TX_EVICTING=$(url "$bouncer_port" neondb_tx)
start_bouncer untracked "$modern" 0 "$tx"
export TEST_NEON_POOLED_TX_UNTRACKED=$(url "$bouncer_port" neondb_tx)
if [ -z "$no_old" ]; then
	start_bouncer old "$old_pooler" - "$tx"
	export TEST_NEON_POOLED_TX_OLD=$(url "$bouncer_port" neondb_tx)
else
	export TEST_NEON_NO_OLD_POOLER=$no_old
fi
export TEST_NEON_DIRECT=$(url "$pg_port" neondb)
export TEST_NEON_LOGIN_RETRY=$login_retry
export TEST_NEON_CA=$tls/ca.pem
export TEST_NEON_WRONG_CA=$tls/wrong-ca.pem
pg_ctl_cmd="$bin/pg_ctl -D $tmp/data -l $tmp/data/server.log -w -m fast"
if [ "$(id -u)" = 0 ]; then pg_ctl_cmd="runuser -u postgres -- $pg_ctl_cmd"; fi
export TEST_NEON_PG_CTL=$pg_ctl_cmd
echo "neon-stack: PostgreSQL (TLS, SCRAM, hostssl only) on 127.0.0.1:$pg_port; $("$modern" --version | head -1) in front with max_prepared_statements 200, 3 and 0; ${no_old:-$("$old_pooler" --version | head -1) in front}" >&2
status=0
"$@" || status=$?
exit $status
