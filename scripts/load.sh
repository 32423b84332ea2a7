#!/usr/bin/env bash
# make load: how close the server comes to what PostgreSQL itself can do on
# this machine, measured end to end.
#
# It starts a PostgreSQL of its own and the built binary (default settings
# but LOG_LEVEL=warn and RATE_LIMIT_RPS=0), seeds 200 users x 50 tasks, and
# drives the server with wrk (2 threads, 64 connections; every request from
# a random user with that user's token) through the scenarios list, get,
# create, update, mixed and auth401, interleaved over LOAD_ROUNDS rounds
# (medians are reported). A seventh, health (GET /healthz: no token, no
# database), is no target: it shows what net/http, the middleware and wrk
# cost on their own on this machine, the floor under every other row. Then pgbench -M prepared -j 2 runs the server's
# own statements (scripts/pgbench, kept identical to the server's SQL by a test) at
# 8, 16 and 64 clients; the best is each scenario's ceiling. Last, the scale
# check seeds a second database with 10,000 users x 100 tasks, starts a
# second server on it, and runs get and list against the two servers in
# alternation (so a drift in the shared machine's speed hits both sides
# alike); then it prints the plans of every statement there.
#
# With PEER='command' (any server of the contract that reads DATABASE_URL,
# BETTER_AUTH_SECRET and PORT), that server runs too, on a database of its
# own seeded alike, each scenario of the common contract interleaved with
# ours run by run (who goes first alternates round by round), and a table
# gives the ratios (targets: 1.5x, mixed 1.3x).
# Last, an open-loop run (vegeta) at half the lower measured maximum for
# get and list gives p50/p99/p99.9 for each server at the same rate, over
# the requests after the first second (vegeta's connections opening), and
# the p99 of all of them beside; interleaved over LOAD_ROUNDS rounds,
# medians, like the rest.
#
# Far-database mode: with LOAD_FAR_DB=MS, both servers reach PostgreSQL
# over TCP through Toxiproxy (installed into the same cache as vegeta),
# with MS milliseconds of latency each way: about what a VM sees to a
# Neon endpoint in its region at 1. pgbench's ceilings stay local.
#
# Settings: LOAD_DURATION (seconds per run, 10), LOAD_ROUNDS (3),
# LOAD_SCALE (1; 0 skips the 1,000,000-row check), LOAD_PORT (18282),
# LOAD_FAR_DB (unset), LOAD_SERVER_ENV ("NAME=value ..." for our server
# only, e.g. DB_BATCH_MAX=1), PEER (unset).
# Exits 1 when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

duration=${LOAD_DURATION:-10}
rounds=${LOAD_ROUNDS:-3}
scale=${LOAD_SCALE:-1}
port=${LOAD_PORT:-18282}
base=http://127.0.0.1:$port

for tool in wrk curl; do
	command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install $tool" >&2; exit 1; }
done
bin=$(pg_bindir)
[ -x "$bin/pgbench" ] || { echo "pgbench is needed (it comes with the PostgreSQL server packages)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/todo-load.XXXXXX)
chmod 755 "$tmp"
server_pid= scale_pid=
cleanup() {
	stop_server "$server_pid"
	stop_server "$scale_pid"
	stop_server "${peer_pid:-}"
	stop_server "${toxiproxy_pid:-}"
	pg_stop "$tmp/data"
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== setting up: PostgreSQL, the binary, the seed"
pg_init "$tmp/data" "$tmp/sock"
# shared_buffers: initdb's 128 MB is a minimal footprint, smaller than the
# scale check's 1,000,000 rows with their indexes (printed there); a
# database serving that much is sized to hold it, and 512 MB is well under
# the quarter of RAM PostgreSQL's documentation suggests on this machine.
# Its own port, which psql, createdb and pgbench take from PGPORT; TCP on
# the loopback only for the far-database mode's proxy.
export PGPORT=$(free_port)
printf 'max_connections = 200\nshared_buffers = 512MB\nport = %s\n' "$PGPORT" | as_pg tee -a "$tmp/data/postgresql.conf" >/dev/null
if [ -n "${LOAD_FAR_DB:-}" ]; then echo "listen_addresses = '127.0.0.1'" | as_pg tee -a "$tmp/data/postgresql.conf" >/dev/null; fi
pg_start "$tmp/data"
# Where the servers reach PostgreSQL: the socket, or (far) the proxy.
db_host=$tmp/sock db_port=$PGPORT
if [ -n "${LOAD_FAR_DB:-}" ]; then
	toxiproxy=${XDG_CACHE_HOME:-$HOME/.cache}/todo-backend/bin/toxiproxy-server
	if [ ! -x "$toxiproxy" ]; then
		echo "== installing Toxiproxy into $(dirname "$toxiproxy")"
		GOBIN=$(dirname "$toxiproxy") GOFLAGS= go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0
		mv "$(dirname "$toxiproxy")/server" "$toxiproxy"
	fi
	api_port=$(free_port) proxy_port=$(free_port)
	"$toxiproxy" -host 127.0.0.1 -port "$api_port" >"$tmp/toxiproxy.log" 2>&1 &
	toxiproxy_pid=$!
	for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$api_port/version" >/dev/null && break; sleep 0.1; done
	curl -fs -X POST "http://127.0.0.1:$api_port/proxies" -d "{\"name\":\"pg\",\"listen\":\"127.0.0.1:$proxy_port\",\"upstream\":\"127.0.0.1:$PGPORT\"}" >/dev/null
	for stream in upstream downstream; do
		curl -fs -X POST "http://127.0.0.1:$api_port/proxies/pg/toxics" \
			-d "{\"type\":\"latency\",\"stream\":\"$stream\",\"attributes\":{\"latency\":$LOAD_FAR_DB}}" >/dev/null
	done
	echo "== far database: both servers reach PostgreSQL through Toxiproxy, ${LOAD_FAR_DB} ms each way"
	db_host=127.0.0.1 db_port=$proxy_port
fi
db_url() { echo "host=$db_host port=$db_port user=todo dbname=$1 sslmode=disable"; } # db_url DATABASE
"$bin/createdb" -h "$tmp/sock" -U todo todo
psql_db() { # psql_db DATABASE ARGS...
	local db=$1
	shift
	"$bin/psql" -h "$tmp/sock" -U todo -d "$db" -v ON_ERROR_STOP=1 -qtA "$@"
}
psql_todo() { psql_db todo "$@"; }
PGOPTIONS="-c client_min_messages=warning" psql_todo -f schema.sql >/dev/null
CGO_ENABLED=0 go build -trimpath -o "$tmp/todo-backend" .

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The main database's figures; the scale check has its own (see there).
users=200
per_user=50
# seed DATABASE USERS PER_USER TOKENS-FILE
seed() {
	psql_db "$1" -c "INSERT INTO tasks (user_id, title, description)
		    SELECT s.u::text, 'task ' || t.i, CASE WHEN t.i % 2 = 0 THEN 'description of task ' || t.i END
		    FROM generate_series(1, $2) AS s(u), generate_series(1, $3) AS t(i)
		    ORDER BY s.u, t.i" \
		-c "VACUUM ANALYZE tasks" >/dev/null
	BETTER_AUTH_SECRET=$secret "$tmp/todo-backend" token -ttl 4h $(seq 1 "$2") >"$4"
}
# reset drops what a writing run added, so every list still sees 50 tasks.
reset() {
	psql_todo -c "DELETE FROM tasks WHERE id > $((users * per_user))" -c "VACUUM tasks" >/dev/null
	if [ -n "${PEER:-}" ]; then
		psql_db peer -c "DELETE FROM tasks WHERE id > $((users * per_user))" -c "VACUUM tasks" >/dev/null
	fi
}

# start_server DATABASE PORT: sets started_pid
start_server() {
	env DATABASE_URL="$(db_url "$1")" BETTER_AUTH_SECRET=$secret \
		PORT=$2 LOG_LEVEL=warn RATE_LIMIT_RPS=0 ${LOAD_SERVER_ENV:-} "$tmp/todo-backend" 2>>"$tmp/server.log" &
	started_pid=$!
	wait_ready "http://127.0.0.1:$2" "$started_pid" "$tmp/server.log" || exit 1
}

# run_wrk measures the server at $target_base (process $target_pid), whose
# users have the tokens in $target_tokens and $target_per_user tasks each.
target_base=$base target_pid= target_tokens=$tmp/tokens target_per_user=$per_user
cpu_ticks() { awk '{print $14 + $15}' "/proc/$target_pid/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# run_wrk SCENARIO SECONDS [RESULTS]: one wrk run; appends "req/s p50 p99
# non2xx cpu_ms" to $tmp/RESULTS.runs (RESULTS is SCENARIO unless given)
run_wrk() {
	local scenario=$1 seconds=$2 results=${3:-$1} before after out
	before=$(cpu_ticks)
	out=$(LOAD_SCENARIO=$scenario LOAD_TOKENS="$target_tokens" LOAD_PER_USER=$target_per_user LOAD_LIST=${list_path:-/api/tasks} \
		wrk -t2 -c64 -d"${seconds}s" --timeout 5s -s scripts/load.lua "$target_base" 2>&1) || {
		echo "$out" >&2
		exit 1
	}
	after=$(cpu_ticks)
	echo "$out" | sed -n 's/^RESULT //p' | awk -v cpu=$((after - before)) -v hz="$ticks_per_second" '{
		match($0, /"requests":[0-9]+/); req = substr($0, RSTART + 11, RLENGTH - 11)
		match($0, /"duration_us":[0-9]+/); dur = substr($0, RSTART + 14, RLENGTH - 14)
		match($0, /"non2xx":[0-9]+/); bad = substr($0, RSTART + 9, RLENGTH - 9)
		match($0, /"socket_errors":[0-9]+/); sock = substr($0, RSTART + 16, RLENGTH - 16)
		match($0, /"p50_us":[0-9]+/); p50 = substr($0, RSTART + 9, RLENGTH - 9)
		match($0, /"p99_us":[0-9]+/); p99 = substr($0, RSTART + 9, RLENGTH - 9)
		printf "%.0f %.2f %.2f %d %.4f\n", req / (dur / 1e6), p50 / 1000, p99 / 1000, bad + sock, (cpu / hz * 1000) / req
	}' >>"$tmp/$results.runs"
}

# median FILE COLUMN
median() { awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# total FILE COLUMN
total() { awk -v c="$2" '{s += $c} END {print s + 0}' "$1"; }

pgbench_tps() { # pgbench_tps CLIENTS SCRIPT-ARGS...
	local clients=$1
	shift
	"$bin/pgbench" -h "$tmp/sock" -U todo -n -M prepared -j 2 -c "$clients" -T "$duration" \
		-D users="$users" -D per_user="$per_user" -D seeded=$((users * per_user)) \
		-D limit=9223372036854775807 -D offset=0 -D title=load -D description=load -D description_set=true \
		-D completed=true -D has_condition=false -D 'versions={}' -D quota_tasks=0 -D quota_bytes=0 "$@" todo 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p'
}

# statement_of SCRIPT NAME...: the statement in scripts/pgbench/SCRIPT,
# which TestPgbenchScriptsAreTheServersSQL keeps identical to the server's,
# with each :NAME made the parameter of its place: $1, $2, ...
statement_of() {
	local sql i=1 name
	sql=$(grep -v -e '^\\' -e '^--' "scripts/pgbench/$1" | sed 's/;$//')
	shift
	for name in "$@"; do
		sql=$(printf '%s\n' "$sql" | sed "s/:$name\\b/\$$i/g")
		i=$((i + 1))
	done
	printf '%s\n' "$sql"
}

seed todo "$users" "$per_user" "$tmp/tokens"
start_server todo "$port"
server_pid=$started_pid target_pid=$started_pid

# PEER: another server of the contract on a database of its own, seeded
# alike (it creates its own table at start, then the same rows go in).
peer_pid=
peer_base=http://127.0.0.1:$((port + 2))
if [ -n "${PEER:-}" ]; then
	"$bin/createdb" -h "$tmp/sock" -U todo peer
	DATABASE_URL="$(db_url peer)" BETTER_AUTH_SECRET=$secret \
		PORT=$((port + 2)) LOG_LEVEL=warn sh -c "exec $PEER" 2>>"$tmp/peer.log" &
	peer_pid=$!
	wait_ready "$peer_base" "$peer_pid" "$tmp/peer.log" || exit 1
	seed peer "$users" "$per_user" "$tmp/tokens"
fi
# sides ROUND [WITH_PEER]: who runs in this round, in order. With the
# peer, who goes first alternates round by round, so that neither side
# always runs on a machine the other has just warmed or left busy.
sides() {
	if [ -z "${2:-}" ]; then
		echo ours
	elif (($1 % 2)); then
		echo ours peer
	else
		echo peer ours
	fi
}
on_ours() { target_base=$base target_pid=$server_pid; }
on_peer() { target_base=$peer_base target_pid=$peer_pid; }
echo "== warming up"
run_wrk list 2 && rm -f "$tmp/list.runs"

scenarios="${LOAD_SCENARIOS:-list get create update mixed scoped auth401 health}"
peer_scenarios="${LOAD_SCENARIOS:-list get create update mixed health}" # the common contract
for round in $(seq 1 "$rounds"); do
	echo "== round $round of $rounds: $scenarios (${duration}s each)${PEER:+, each beside a run of the peer}"
	for s in $scenarios; do
		with_peer=
		if [ -n "$peer_pid" ] && [[ " $peer_scenarios " == *" $s "* ]]; then with_peer=1; fi
		for side in $(sides "$round" "$with_peer"); do
			if [ "$side" = ours ]; then on_ours && run_wrk "$s" "$duration"; else on_peer && run_wrk "$s" "$duration" "$s.peer"; fi
		done
		case $s in create | mixed) reset ;; esac
	done
done
on_ours
peak_rss_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status")

echo "== ceiling: pgbench -M prepared -j 2 at 8, 16 and 64 clients (${duration}s each)"
for s in list get create update mixed scoped; do
	best=0 best_clients=0
	for c in 8 16 64; do
		if [ "$s" = mixed ]; then
			tps=$(pgbench_tps "$c" -f scripts/pgbench/list.sql@20 -f scripts/pgbench/get.sql@50 -f scripts/pgbench/create.sql@10 \
				-f scripts/pgbench/update.sql@5 -f scripts/pgbench/complete.sql@5 -f scripts/pgbench/delete.sql@10)
		elif [ "$s" = scoped ]; then
			tps=$(pgbench_tps "$c" -f scripts/pgbench/list_title.sql@40 -f scripts/pgbench/get.sql@40 -f scripts/pgbench/toggle.sql@20)
		else
			tps=$(pgbench_tps "$c" -f "scripts/pgbench/$s.sql")
		fi
		case $s in create | mixed) reset ;; esac
		if awk -v a="$tps" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$tps best_clients=$c; fi
	done
	echo "$best $best_clients" >"$tmp/$s.ceiling"
done

missed=()
report() { # report TITLE SCENARIOS...
	local title=$1
	shift
	echo
	echo "$title"
	printf '%-8s %10s %8s %8s %8s %10s %14s %10s\n' scenario "req/s" "p50 ms" "p99 ms" non-2xx "CPU ms/req" "ceiling tps" "of ceiling"
	for s in "$@"; do
		local rps p50 p99 bad cpu ceiling clients pct
		rps=$(median "$tmp/$s.runs" 1) p50=$(median "$tmp/$s.runs" 2) p99=$(median "$tmp/$s.runs" 3)
		bad=$(total "$tmp/$s.runs" 4) cpu=$(median "$tmp/$s.runs" 5)
		if [ -f "$tmp/$s.ceiling" ]; then
			read -r ceiling clients <"$tmp/$s.ceiling"
			pct=$(awk -v a="$rps" -v b="$ceiling" 'BEGIN { printf "%.0f%%", 100 * a / b }')
			ceiling=$(printf '%.0f (%s)' "$ceiling" "$clients")
		else
			ceiling="-" pct="-"
		fi
		printf '%-8s %10s %8s %8s %8s %10s %14s %10s\n' "$s" "$rps" "$p50" "$p99" "$bad" "$cpu" "$ceiling" "$pct"
		case $s in
		list | get | create | update)
			awk -v a="$rps" -v b="$(cut -d' ' -f1 "$tmp/$s.ceiling")" 'BEGIN { exit !(a >= 0.4 * b) }' || missed+=("$s below 40% of its ceiling")
			[ "$bad" = 0 ] || missed+=("$s had $bad non-2xx answers")
			;;
		esac
		[ "$s" = health ] || awk -v p="$p99" 'BEGIN { exit !(p <= 15) }' || missed+=("$s p99 ${p99} ms over 15 ms")
	done
}

report "== results, 200 users x 50 tasks (medians of $rounds rounds; non-2xx summed)" $scenarios

if [ -n "$peer_pid" ]; then
	echo
	echo "== side by side with PEER ($PEER), interleaved run by run"
	printf '%-8s %10s %10s %8s %16s %10s\n' scenario "ours req/s" "peer req/s" ratio "p99 ms ours/peer" "peer non-2xx"
	for s in $peer_scenarios; do
		ours=$(median "$tmp/$s.runs" 1) theirs=$(median "$tmp/$s.peer.runs" 1)
		ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2fx", (b > 0) ? a / b : 0 }')
		printf '%-8s %10s %10s %8s %16s %10s\n' "$s" "$ours" "$theirs" "$ratio" \
			"$(median "$tmp/$s.runs" 3) / $(median "$tmp/$s.peer.runs" 3)" "$(total "$tmp/$s.peer.runs" 4)"
		want=1.5
		[ "$s" = mixed ] && want=1.3
		[ "$s" = health ] || awk -v a="$ours" -v b="$theirs" -v w="$want" 'BEGIN { exit !(a >= w * b) }' || missed+=("$s ${ratio} the peer, under ${want}x")
	done
fi

# Open loop: a fixed rate, half the lower of the measured maxima for get and
# list, the same for both servers, with vegeta (installed into a cache,
# never a dependency of the module).
vegeta=${XDG_CACHE_HOME:-$HOME/.cache}/todo-backend/bin/vegeta
if [ ! -x "$vegeta" ]; then
	echo "== installing vegeta into $(dirname "$vegeta")"
	GOBIN=$(dirname "$vegeta") GOFLAGS= go install github.com/tsenart/vegeta/v12@v12.13.0
fi
open_loop() { # open_loop SCENARIO RATE BASE LABEL
	local s=$1 rate=$2 target=$3 label=$4 u
	: >"$tmp/targets"
	for u in $(seq 1 "$users"); do
		if [ "$s" = get ]; then
			printf 'GET %s/api/tasks/%d\nAuthorization: Bearer %s\n\n' "$target" $(((u - 1) * per_user + RANDOM % per_user + 1)) "$(sed -n "${u}p" "$tmp/tokens")"
		else
			printf 'GET %s/api/tasks\nAuthorization: Bearer %s\n\n' "$target" "$(sed -n "${u}p" "$tmp/tokens")"
		fi >>"$tmp/targets"
	done
	"$vegeta" attack -rate="$rate/s" -duration="$((duration + 1))s" -targets="$tmp/targets" -max-workers=256 >"$tmp/attack.bin"
	# Columns: when the request was sent (ns), status, latency (ns).
	"$vegeta" encode --to csv <"$tmp/attack.bin" | awk -F, 'NR == 1 {t0 = $1} {
		print ($1 - t0 >= 1e9) ? 1 : 0, $3 / 1e6, ($2 >= 200 && $2 < 300) ? 0 : 1 }' >"$tmp/lat"
	local p99_all
	p99_all=$(awk '{print $2}' "$tmp/lat" | sort -g | awk '{v[NR] = $1} END {printf "%.2f", v[int(NR * 0.99) + 1]}')
	awk '$1 == 1 {print $2, $3}' "$tmp/lat" | sort -g | awk -v s="$s" -v l="$label" -v r="$rate" -v all="$p99_all" '{v[NR] = $1; bad += $2} END {
		printf "%-6s %-5s %8d %9.2f %9.2f %10.2f %8d %17s\n", s, l, r, v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], v[int(NR * 0.999) + 1], bad, all }' |
		tee -a "$tmp/open.$s.$label"
}
# The ceiling's pgbench wrote to our database only: its dead rows and
# dirty pages would be vacuumed and flushed in the middle of our open loop.
# Both databases start it vacuumed, analyzed and checkpointed.
psql_todo -c "VACUUM ANALYZE tasks" >/dev/null
if [ -n "$peer_pid" ]; then psql_db peer -c "VACUUM ANALYZE tasks" >/dev/null; fi
psql_todo -c CHECKPOINT >/dev/null
echo
echo "== open loop: a fixed rate, $rounds interleaved rounds of 1 + ${duration}s (vegeta), medians;"
echo "   latency in ms of the requests after the first second, while vegeta opens its"
echo "   connections (the last column has the p99 of every request, that second in)"
open_loop_rounds() { # open_loop_rounds SCENARIO: every round of ours and the peer's
	local s=$1 lowest rate round side
	lowest=$(median "$tmp/$s.runs" 1)
	if [ -n "$peer_pid" ]; then lowest=$(awk -v a="$lowest" -v b="$(median "$tmp/$s.peer.runs" 1)" 'BEGIN { print (b < a) ? b : a }'); fi
	rate=$(awk -v m="$lowest" 'BEGIN { printf "%d", m / 2 }')
	for round in $(seq 1 "$rounds"); do
		for side in $(sides "$round" "$peer_pid"); do
			if [ "$side" = ours ]; then open_loop "$s" "$rate" "$base" ours; else open_loop "$s" "$rate" "$peer_base" peer; fi >/dev/null
		done
	done
}
open_loop_report() { # open_loop_report SCENARIO LABEL: the medians of its rounds
	local f=$tmp/open.$1.$2
	printf '%-6s %-5s %8s %9.2f %9.2f %10.2f %8d %17.2f\n' "$1" "$2" "$(median "$f" 3)" "$(median "$f" 4)" "$(median "$f" 5)" \
		"$(median "$f" 6)" "$(total "$f" 7)" "$(median "$f" 8)"
}
printf '%-6s %-5s %8s %9s %9s %10s %8s %17s\n' scenario who "req/s" p50 p99 p99.9 non-2xx "p99 with 1st s"
for s in get list; do
	[[ " $scenarios " == *" $s "* ]] || continue # not measured: LOAD_SCENARIOS left it out
	open_loop_rounds "$s"
	open_loop_report "$s" ours
	if [ -n "$peer_pid" ]; then
		open_loop_report "$s" peer
		awk -v a="$(median "$tmp/open.$s.ours" 5)" -v b="$(median "$tmp/open.$s.peer" 5)" 'BEGIN { exit !(a <= 0.7 * b) }' ||
			missed+=("open-loop $s p99 not at most 0.7x the peer's")
	fi
done
peak_mib=$(awk -v k="$peak_rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
echo "peak RSS of the server: ${peak_mib} MiB"
awk -v m="$peak_mib" 'BEGIN { exit !(m <= 20) }' || missed+=("peak RSS ${peak_mib} MiB over 20 MiB")

if [ "$scale" = 1 ]; then
	echo
	echo "== scale: a second database, 10,000 users x 100 tasks (1,000,000 rows), and a"
	echo "   second server on it; get and list alternate between the 200 x 50 server and"
	echo "   this one, so the shared machine's drift hits both alike. Both lists ask"
	echo "   ?limit=50: the same 50 tasks per answer, only the table's size differs."
	"$bin/createdb" -h "$tmp/sock" -U todo todo_scale
	PGOPTIONS="-c client_min_messages=warning" psql_db todo_scale -f schema.sql >/dev/null
	seed todo_scale 10000 100 "$tmp/tokens.scale"
	echo "   tasks at 1,000,000 rows, with its indexes: $(psql_db todo_scale -c "SELECT pg_size_pretty(pg_total_relation_size('tasks'))") (shared_buffers $(psql_db todo_scale -c 'SHOW shared_buffers'))"
	start_server todo_scale $((port + 1))
	scale_pid=$started_pid
	on_small() { target_base=$base target_pid=$server_pid target_tokens=$tmp/tokens target_per_user=$per_user; }
	on_large() { target_base=http://127.0.0.1:$((port + 1)) target_pid=$scale_pid target_tokens=$tmp/tokens.scale target_per_user=100; }
	list_path="/api/tasks?limit=50"
	on_large && run_wrk get 2 warmup
	for round in $(seq 1 "$rounds"); do
		for s in get list; do
			on_small && run_wrk "$s" "$duration" "$s.small"
			on_large && run_wrk "$s" "$duration" "$s.large"
		done
	done
	echo "scenario  200x50 req/s  10000x100 req/s  change"
	for s in get list; do
		small=$(median "$tmp/$s.small.runs" 1) large=$(median "$tmp/$s.large.runs" 1)
		change=$(awk -v a="$small" -v b="$large" 'BEGIN { printf "%+.1f%%", 100 * (b - a) / a }')
		printf '%-8s  %12s  %15s  %6s\n' "$s" "$small" "$large" "$change"
		awk -v a="$small" -v b="$large" 'BEGIN { exit !(b >= 0.85 * a) }' || missed+=("$s at 1,000,000 rows is more than 15% below 200x50")
	done
	echo
	echo "== plans at 1,000,000 rows (generic plans, as the server's prepared statements run)"
	psql_db todo_scale -c "SET plan_cache_mode = force_generic_plan" \
		-c "PREPARE list_tasks AS $(statement_of list.sql user limit offset)" \
		-c "PREPARE list_completed AS $(statement_of list_completed.sql user completed limit offset)" \
		-c "PREPARE get_task AS $(statement_of get.sql user id)" \
		-c "PREPARE update_task AS $(statement_of update.sql user id has_condition versions title description_set description completed quota_tasks quota_bytes)" \
		-c "PREPARE delete_task AS $(statement_of delete.sql user id has_condition versions)" \
		-c "PREPARE list_batch AS $(statement_of list_batch.sql batch_users batch_completed batch_limits batch_offsets)" \
		-c "PREPARE get_batch AS $(statement_of get_batch.sql batch_users batch_ids)" \
		-c "PREPARE list_oldest AS $(statement_of list_oldest.sql user limit offset)" \
		-c "PREPARE list_title AS $(statement_of list_title.sql user limit offset)" \
		-c "PREPARE list_title_desc AS $(statement_of list_title_desc.sql user limit offset)" \
		-c "PREPARE list_after AS $(statement_of list_after.sql user created id limit)" \
		-c "PREPARE list_title_after AS $(statement_of list_title_after.sql user title id limit)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_tasks('5000', 9223372036854775807, 0)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_completed('5000', true, 9223372036854775807, 0)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE get_task('5000', 499950)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE update_task('5000', 499950, false, '{}', 'load', false, NULL, NULL, 0, 0)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE delete_task('5000', 499950, false, '{}')" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_batch('{5000,5001}', '{NULL,true}', '{50,50}', '{0,0}')" \
		-c "EXPLAIN (COSTS OFF) EXECUTE get_batch('{5000,5001}', '{499950,500050}')" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_oldest('5000', 100, 0)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_title('5000', 100, 0)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_title_desc('5000', 100, 0)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_after('5000', now(), 499950, 100)" \
		-c "EXPLAIN (COSTS OFF) EXECUTE list_title_after('5000', 'task', 499950, 100)" | sed 's/^/  /'
fi

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(date -u +%Y-%m-%d)"
if [ ${#missed[@]} -eq 0 ]; then
	echo "TARGETS: all met"
else
	echo "TARGETS MISSED:"
	printf '  - %s\n' "${missed[@]}"
	exit 1
fi
