#!/usr/bin/env bash
# make faults: prove that an acknowledged write is never lost and that a
# SIGTERM drains in-flight requests, against the real binary and a durable
# PostgreSQL (fsync and synchronous_commit on, as in production).
#
# 1. kill: writers create and delete tasks; PostgreSQL is killed with
#    SIGKILL mid-load and restarted. Every task whose create got a 201 must
#    be present unless its delete got a 204; every task whose delete got a
#    204 must be gone.
# 2. drain: readers and writers run, slow uploads are in flight, and the
#    server gets SIGTERM. Every request it accepted must be answered with
#    success, and it must exit 0.
#
# Needs curl and the PostgreSQL server binaries; starts and stops everything
# itself. Exits non-zero on any lost write or failed request.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

workers=${FAULTS_WORKERS:-8}
port=${FAULTS_PORT:-18181}
base=http://127.0.0.1:$port
tmp=$(mktemp -d /tmp/todo-faults.XXXXXX)
chmod 755 "$tmp"
server_pid=
cleanup() {
	stop_server "$server_pid"
	stop_server "${haproxy_pid:-}"
	if [ -n "${image_container:-}" ]; then podman rm -f "$image_container" >/dev/null 2>&1 || true; fi
	for pid in "${instance_pids[@]:-}"; do stop_server "$pid"; done
	pg_stop "$tmp/data"
	rm -rf "$tmp"
}
trap cleanup EXIT

for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: apt-get install $tool)" >&2; exit 1; }
done
pg_init "$tmp/data" "$tmp/sock" # durable, unlike make test's throwaway cluster
pg_start "$tmp/data"
bin=$(pg_bindir)
"$bin/createdb" -h "$tmp/sock" -U todo todo
psql_todo() { "$bin/psql" -h "$tmp/sock" -U todo -d todo -tAq "$@"; }

go build -o "$tmp/todo-backend" .
export DATABASE_URL="host=$tmp/sock user=todo dbname=todo sslmode=disable"
BETTER_AUTH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# QUOTA_TASKS=0: the drain rounds create over 10,000 tasks for one user,
# and a quota 409 is not what they measure.
export BETTER_AUTH_SECRET PORT=$port LOG_LEVEL=warn RATE_LIMIT_RPS=0 DB_TIMEOUT=2s DB_WAIT=30s QUOTA_TASKS=0

start_server() {
	"$tmp/todo-backend" 2>>"$tmp/server.log" &
	server_pid=$!
	wait_ready "$base" "$server_pid" "$tmp/server.log" || exit 1
}

declare -a tokens
for i in $(seq 1 "$workers"); do
	tokens[i]=$("$tmp/todo-backend" token -ttl 1h "faults-user-$i")
done

# writer I UNTIL LOG: create tasks, and delete every third one it created,
# until UNTIL (epoch seconds). One line per request:
#   <time> <C|D> <curl exit> <http status> <task id>
writer() {
	local i=$1 until=$2 log=$3 token=${tokens[$1]}
	local n=0 rc out status id
	local -a mine=()
	while [ "${EPOCHREALTIME%.*}" -lt "$until" ]; do
		n=$((n + 1))
		rc=0
		out=$(curl -s -o /dev/null -D - -w 'STATUS %{http_code}' --max-time 15 \
			-H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
			-d "{\"title\":\"w$i-$n\"}" "$base/api/tasks" 2>/dev/null) || rc=$?
		status=${out##*STATUS }
		id=$(printf '%s\n' "$out" | tr -d '\r' | sed -n 's#^[Ll]ocation: /api/tasks/##p')
		echo "$EPOCHREALTIME C $rc ${status:-000} ${id:--}" >>"$log"
		if [ "$rc" = 0 ] && [ "$status" = 201 ] && [ -n "$id" ]; then mine+=("$id"); fi
		if [ $((n % 3)) = 0 ] && [ ${#mine[@]} -gt 0 ]; then
			id=${mine[0]}
			mine=("${mine[@]:1}")
			rc=0
			status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 15 -X DELETE \
				-H "Authorization: Bearer $token" "$base/api/tasks/$id" 2>/dev/null) || rc=$?
			echo "$EPOCHREALTIME D $rc ${status:-000} $id" >>"$log"
		fi
	done
}

# reader I UNTIL LOG: list the user's tasks until UNTIL.
reader() {
	local i=$1 until=$2 log=$3 token=${tokens[$1]} rc status
	while [ "${EPOCHREALTIME%.*}" -lt "$until" ]; do
		rc=0
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 15 \
			-H "Authorization: Bearer $token" "$base/api/tasks?limit=20" 2>/dev/null) || rc=$?
		echo "$EPOCHREALTIME R $rc ${status:-000} -" >>"$log"
	done
}

echo "== kill: SIGKILL PostgreSQL under a write load of $workers writers"
start_server
now=${EPOCHREALTIME%.*}
for i in $(seq 1 "$workers"); do writer "$i" $((now + 12)) "$tmp/kill.$i.log" & done
sleep 3
postmaster=$(head -n 1 "$tmp/data/postmaster.pid")
children=$(pgrep -P "$postmaster" | tr '\n' ' ')
killed_at=$EPOCHREALTIME
kill -KILL "$postmaster"
for pid in $children; do
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
done
sleep 1
pg_start "$tmp/data"
back_at=$EPOCHREALTIME
wait_workers() { while [ -n "$(jobs -rp | grep -vx "$server_pid")" ]; do sleep 0.2; done; }
wait_workers

cat "$tmp"/kill.*.log >"$tmp/kill.log"
awk '$2 == "C" && $3 == 0 && $4 == 201 {print $5}' "$tmp/kill.log" | sort -u >"$tmp/created"
awk '$2 == "D" && $3 == 0 && $4 == 204 {print $5}' "$tmp/kill.log" | sort -u >"$tmp/deleted"
awk '$2 == "D" && !($3 == 0 && ($4 == 204 || $4 == 404)) {print $5}' "$tmp/kill.log" | sort -u >"$tmp/delete_unknown"
psql_todo -c "SELECT id FROM tasks WHERE user_id LIKE 'faults-user-%'" | sort -u >"$tmp/present"
sort -u "$tmp/deleted" "$tmp/delete_unknown" >"$tmp/gone_or_unknown"
comm -23 "$tmp/created" "$tmp/gone_or_unknown" >"$tmp/must_exist"
lost=$(comm -23 "$tmp/must_exist" "$tmp/present" | wc -l)
resurrected=$(comm -12 "$tmp/deleted" "$tmp/present" | wc -l)
requests=$(wc -l <"$tmp/kill.log")
count() { awk -v k="$1" -v s="$2" '$2 == k && $3 == 0 && $4 == s' "$tmp/kill.log" | wc -l; }
conn_errors=$(awk '$3 != 0' "$tmp/kill.log" | wc -l)
unavailable=$(awk '$3 == 0 && $4 == 503' "$tmp/kill.log" | wc -l)
other=$(awk '$3 == 0 && $4 != 201 && $4 != 204 && $4 != 503' "$tmp/kill.log" | wc -l)
recovered=$(awk -v t="$back_at" '$1 > t && $3 == 0 && ($4 == 201 || $4 == 204) {print $1; exit}' <(sort -n "$tmp/kill.log"))
recovery=$(awk -v a="$back_at" -v b="${recovered:-0}" 'BEGIN { if (b == 0) print "never"; else printf "%.2f s", b - a }')
outage=$(awk -v a="$killed_at" -v b="$back_at" 'BEGIN { printf "%.1f s", b - a }')
printf '  requests: %d (201: %d, 204: %d, 503 while down: %d, other statuses: %d, connection errors: %d)\n' \
	"$requests" "$(count C 201)" "$(count D 204)" "$unavailable" "$other" "$conn_errors"
printf '  database down for %s; first success %s after it was back\n' "$outage" "$recovery"
printf '  acknowledged creates: %d, of which %d must still exist; lost: %d\n' "$(wc -l <"$tmp/created")" "$(wc -l <"$tmp/must_exist")" "$lost"
printf '  acknowledged deletes: %d; present again: %d\n' "$(wc -l <"$tmp/deleted")" "$resurrected"

echo "== drain: SIGTERM under load, with slow uploads in flight"
now=${EPOCHREALTIME%.*}
for i in $(seq 1 "$workers"); do
	if [ $((i % 2)) = 0 ]; then writer "$i" $((now + 6)) "$tmp/drain.$i.log" & else reader "$i" $((now + 6)) "$tmp/drain.$i.log" & fi
done
# Each slow upload sends a 6 KB body at 2 KB/s: about 3 s, in flight at the signal.
description=$(head -c 6000 /dev/zero | tr '\0' 'x')
for s in 1 2 3; do
	(
		rc=0
		status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 --limit-rate 2k \
			-H "Authorization: Bearer ${tokens[1]}" -H 'Content-Type: application/json' \
			-d "{\"title\":\"slow $s\",\"description\":\"$description\"}" "$base/api/tasks" 2>/dev/null) || rc=$?
		echo "$EPOCHREALTIME S $rc ${status:-000} -" >>"$tmp/drain.slow.log"
	) &
done
sleep 1.5
kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
wait_workers
cat "$tmp"/drain.*.log >"$tmp/drain.log"
# curl exit 7 is "could not connect": the listener had closed, the request
# was never accepted. Anything else that is not a 2xx is a failed request.
refused=$(awk '$3 == 7' "$tmp/drain.log" | wc -l)
answered=$(awk '$3 == 0 && $4 ~ /^2/' "$tmp/drain.log" | wc -l)
failed=$(awk '$3 != 7 && !($3 == 0 && $4 ~ /^2/)' "$tmp/drain.log" | wc -l)
slow_ok=$(awk '$2 == "S" && $3 == 0 && $4 == 201' "$tmp/drain.log" | wc -l)
printf '  requests answered: %d, failed: %d, refused after the listener closed: %d\n' "$answered" "$failed" "$refused"
printf '  slow uploads in flight at SIGTERM completed with 201: %d of 3; server exit status: %d\n' "$slow_ok" "$server_status"
if [ "$failed" != 0 ]; then
	echo "  failed requests:" >&2
	awk '$3 != 7 && !($3 == 0 && $4 ~ /^2/)' "$tmp/drain.log" | head >&2
fi

# 3. drain under keep-alive load (scripts/keepalive-drain.py): 32 clients
# on keep-alive connections alternate a list and a create; SIGTERM after
# 3 s; FAULTS_ROUNDS rounds. A request written before the signal must be
# answered with a 2xx. FAULTS_LAME_DUCK=0 turns the lame-duck period off,
# to see what it saves.
rounds=${FAULTS_ROUNDS:-5}
echo "== drain under keep-alive load: 32 clients, SIGTERM at 3 s, $rounds rounds (SHUTDOWN_LAME_DUCK=${FAULTS_LAME_DUCK:-1s})"
keepalive_failed=0
for round in $(seq 1 "$rounds"); do
	SHUTDOWN_LAME_DUCK=${FAULTS_LAME_DUCK:-1s} start_server
	round_status=0
	line=$(python3 scripts/keepalive-drain.py "$base" "${tokens[1]}" "$server_pid") || round_status=$?
	server_status=0
	wait "$server_pid" || server_status=$?
	server_pid=
	echo "  round $round: $line; server exit $server_status"
	if [ "$round_status" != 0 ] || [ "$server_status" != 0 ]; then keepalive_failed=$((keepalive_failed + 1)); fi
done

# 4. rolling restart behind a load balancer: three instances on one
# database, each with every default setting, behind haproxy with
# deploy/haproxy.cfg (only its ports changed), 32 users on keep-alive
# connections through it, 30 requests a second each (creates, lists,
# gets, updates: scripts/rolling-load.py); each instance in turn
# is SIGTERMed, kept down for 5 s and started again. Every request must
# succeed, every instance must exit 0, and the database must hold every
# acknowledged write as acknowledged.
if ! command -v haproxy >/dev/null; then
	if [ "$(id -u)" != 0 ]; then
		echo "haproxy is needed: apt-get install haproxy" >&2
		exit 1
	fi
	echo "== installing haproxy"
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
echo "== rolling restart: 3 instances behind $(haproxy -v | head -1 | cut -d' ' -f1-3) (deploy/haproxy.cfg), each SIGTERMed, down 5 s, started again"
declare -a instance_ports instance_pids
lb_port=$(free_port)
for i in 1 2 3; do instance_ports[i]=$(free_port); done
# lb_config PORT LIMIT: deploy/haproxy.cfg on PORT with this run's
# instances, and the fleet's per-user limit at LIMIT requests in 10 s.
lb_config() {
	sed -e "s/^    bind :8080$/    bind 127.0.0.1:$1/" -e "s/sc_http_req_rate(0) gt 500 }/sc_http_req_rate(0) gt $2 }/" \
		-e "s/127\.0\.0\.1:8001/127.0.0.1:${instance_ports[1]}/" \
		-e "s/127\.0\.0\.1:8002/127.0.0.1:${instance_ports[2]}/" \
		-e "s/127\.0\.0\.1:8003/127.0.0.1:${instance_ports[3]}/" deploy/haproxy.cfg
}
lb_config "$lb_port" 500 >"$tmp/haproxy.cfg" # as shipped
start_instance() { # start_instance I: instance I on its port, with every default
	env -u LOG_LEVEL -u RATE_LIMIT_RPS -u DB_TIMEOUT -u DB_WAIT -u QUOTA_TASKS \
		PORT="${instance_ports[$1]}" "$tmp/todo-backend" 2>>"$tmp/instance-$1.log" &
	instance_pids[$1]=$!
	wait_ready "http://127.0.0.1:${instance_ports[$1]}" "${instance_pids[$1]}" "$tmp/instance-$1.log" || exit 1
}
for i in 1 2 3; do start_instance "$i"; done
haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
wait_ready "http://127.0.0.1:$lb_port" "$haproxy_pid" "$tmp/haproxy.log" || exit 1
for i in $(seq 1 32); do "$tmp/todo-backend" token -ttl 1h "rolling-user-$i"; done >"$tmp/rolling-tokens"
python3 scripts/rolling-load.py "http://127.0.0.1:$lb_port" "$tmp/rolling-tokens" "$tmp/rolling-stop" "$tmp/rolling-acked" >"$tmp/rolling.out" &
load_pid=$!
sleep 3
instances_failed=0
for i in 1 2 3; do
	kill -TERM "${instance_pids[$i]}"
	status=0
	wait "${instance_pids[$i]}" || status=$?
	if [ "$status" != 0 ]; then instances_failed=$((instances_failed + 1)); fi
	sleep 5
	start_instance "$i"
	sleep 2 # rise 2 x inter 250ms, with room
	echo "  instance $i: exit $status after SIGTERM, down 5 s, started again"
done
sleep 2
touch "$tmp/rolling-stop"
load_status=0
wait "$load_pid" || load_status=$?
sed 's/^/  /' "$tmp/rolling.out"
kill "$haproxy_pid" 2>/dev/null || true
wait "$haproxy_pid" 2>/dev/null || true

# 4b. one per-user limit for the whole fleet, at the balancer: the same
# file with its limit at 100 requests in 10 s; one user's burst spread
# over the three instances gets about 100 answers in all, the rest the
# contract's 429, where the instances' own limits (a burst of 100 each)
# would have let about 300 through.
echo "== one user's burst through haproxy, the fleet's per-user limit at 100 requests in 10 s"
lb_config "$lb_port" 100 >"$tmp/haproxy-limited.cfg"
haproxy -f "$tmp/haproxy-limited.cfg" -db >>"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
wait_ready "http://127.0.0.1:$lb_port" "$haproxy_pid" "$tmp/haproxy.log" || exit 1
burst_status=0
burst=$(python3 scripts/rate-burst.py "http://127.0.0.1:$lb_port" "$("$tmp/todo-backend" token burst-user)" 3) || burst_status=$?
burst_ok=$(echo "$burst" | awk '{ exit !($2 >= 95 && $2 <= 110 && $4 > 0) }' && echo 1 || echo 0)
echo "  $burst (want about 100 2xx)"
if [ "$burst_status" != 0 ]; then burst_ok=0; fi
kill "$haproxy_pid" 2>/dev/null || true
wait "$haproxy_pid" 2>/dev/null || true
for i in 1 2 3; do stop_server "${instance_pids[$i]}"; done
# The last acknowledged write of each task is what the database holds.
rolling_lost=$(psql_todo -c "CREATE TEMP TABLE acked (seq int, who int, id bigint, title text)" \
	-c "\\copy acked FROM '$tmp/rolling-acked'" \
	-c "SELECT count(*) FROM (SELECT DISTINCT ON (id) id, title FROM acked ORDER BY id, seq DESC) AS a
	    LEFT JOIN tasks t ON t.id = a.id AND t.title = a.title WHERE t.id IS NULL" | tail -1)
echo "  acknowledged writes missing or altered in the database: $rolling_lost"

# 5. the container image (make image) against this PostgreSQL, with every
# default setting: /readyz, a create, and SIGTERM (podman stop) draining
# to exit 0. This machine
# needs runc (podman's default crun fails here) and ulimits within its own
# (podman's defaults are higher than the sandbox allows).
echo "== container image: make image, run against this PostgreSQL, podman stop"
image=$(bash scripts/image.sh)
image_container=todo-faults-$$
image_port=$(free_port)
podman --runtime runc run -d --name "$image_container" --network host \
	--ulimit nofile=20000:20000 --ulimit nproc=4096:4096 -v "$tmp/sock:/sock" \
	-e DATABASE_URL="host=/sock user=todo dbname=todo sslmode=disable" -e PORT="$image_port" \
	-e BETTER_AUTH_SECRET \
	todo-backend:latest >/dev/null
image_ok=0
for _ in $(seq 1 100); do
	curl -fs "http://127.0.0.1:$image_port/readyz" >/dev/null 2>&1 && image_ok=1 && break
	sleep 0.1
done
image_create=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $("$tmp/todo-backend" token image-user)" -H 'Content-Type: application/json' \
	-d '{"title":"from the image"}' "http://127.0.0.1:$image_port/api/tasks" || true)
podman stop -t 20 "$image_container" >/dev/null
image_exit=$(podman inspect --format '{{.State.ExitCode}}' "$image_container")
image_stopped=$(podman logs "$image_container" 2>&1 | grep -c '"msg":"stopped"' || true)
podman rm "$image_container" >/dev/null
image_container=
echo "  $image: /readyz $([ "$image_ok" = 1 ] && echo 200 || echo 'never 200'), create $image_create, exit $image_exit after podman stop, drained: $image_stopped"
image_passed=0
if [ "$image_ok" = 1 ] && [ "$image_create" = 201 ] && [ "$image_exit" = 0 ] && [ "$image_stopped" = 1 ]; then image_passed=1; fi

if [ "$lost" = 0 ] && [ "$resurrected" = 0 ] && [ "$failed" = 0 ] && [ "$slow_ok" = 3 ] && [ "$server_status" = 0 ] && [ -n "$recovered" ] &&
	[ "$keepalive_failed" = 0 ] && [ "$load_status" = 0 ] && [ "$instances_failed" = 0 ] && [ "$rolling_lost" = 0 ] && [ "$burst_ok" = 1 ] &&
	[ "$image_passed" = 1 ]; then
	echo "faults: PASS (0 lost writes, 0 failed requests)"
else
	echo "faults: FAIL (lost $lost, resurrected $resurrected, failed $failed, slow uploads $slow_ok/3, exit $server_status, keep-alive drain rounds failed $keepalive_failed, rolling restart: load exit $load_status, instances failed $instances_failed, writes lost $rolling_lost; fleet limit held $burst_ok; image passed $image_passed)" >&2
	exit 1
fi
