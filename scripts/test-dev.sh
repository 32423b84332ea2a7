#!/usr/bin/env bash
# make test-dev: make run and make clean-dev the way a new user meets them,
# from a fresh copy of the checkout in a private (mode 700) folder: as the
# current user and, when that is root, also as an ordinary user in a home
# of its own. Each case checks that the curl line make run prints answers
# [], that a second make run says in one line that one is running, that
# SIGTERM leaves no process, that a rerun keeps the data and says where it
# is, and that make clean-dev removes it. Exits 1 on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
. scripts/pg.sh

fail() { echo "test-dev: $*" >&2; exit 1; }

# copy_checkout DIR: the tracked and untracked-but-not-ignored files.
copy_checkout() {
	(cd "$src" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$1"
}

# as USER CMD...: run CMD as USER ("" is the current user) in its home.
as() {
	local user=$1
	shift
	if [ -z "$user" ]; then
		"$@"
	else
		local home
		home=$(getent passwd "$user" | cut -d: -f6)
		runuser -u "$user" -- env HOME="$home" PATH="$PATH" GOFLAGS="${GOFLAGS:-}" "$@"
	fi
}

# start_run USER DIR PORT LOG: make run in the background; prints its pid.
start_run() {
	local user=$1 dir=$2 port=$3 log=$4
	rm -f "$dir/.pid"
	as "$user" bash -c 'cd "$1" && echo $$ >.pid && PORT=$2 exec bash scripts/dev.sh' _ "$dir" "$port" >"$log" 2>&1 &
	for _ in $(seq 1 600); do
		[ -s "$dir/.pid" ] && grep -q "curl -H" "$log" && { cat "$dir/.pid"; return 0; }
		sleep 0.2
	done
	cat "$log" >&2
	fail "make run printed no curl line within 120 s"
}

# stop_run PID: SIGTERM and wait until it is gone.
stop_run() {
	kill -TERM "$1"
	for _ in $(seq 1 150); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.2
	done
	fail "make run (pid $1) still running 30 s after SIGTERM"
}

check_case() { # check_case USER DIR
	local user=$1 dir=$2 port=$((18400 + RANDOM % 500)) log pid line token data
	log=$dir/run.log
	pid=$(start_run "$user" "$dir" "$port" "$log")
	line=$(grep -o "curl -H 'Authorization: Bearer [^']*' http://localhost:$port/api/tasks" "$log") || fail "no curl line in: $(cat "$log")"
	token=$(echo "$line" | sed "s/.*Bearer \([^']*\)'.*/\1/")
	data=$(sed -n 's/.*(data in \(.*\)\/pgdata).*/\1/p' "$log")
	[ -n "$data" ] || fail "make run did not say where the data lives: $(cat "$log")"
	if [ -n "$user" ] || [ "$(id -u)" != 0 ]; then
		[ "$data" = "$dir/.dev" ] || fail "as ${user:-$(id -un)}, data in $data; want $dir/.dev"
	else
		case $data in /var/tmp/*) ;; *) fail "as root in a mode-700 folder, data in $data; want a folder under /var/tmp" ;; esac
		[ "$(stat -c '%U %a' "$data")" = "postgres 700" ] || fail "$data is $(stat -c '%U %a' "$data"); want postgres 700"
	fi
	[ "$(bash -c "$line" 2>/dev/null)" = "[]" ] || fail "the curl line did not answer []"
	curl -fsS -H "Authorization: Bearer $token" -d '{"title":"kept"}' "http://127.0.0.1:$port/api/tasks" >/dev/null

	# A second make run: one line saying so, and exit 1.
	local second status=0
	second=$(as "$user" bash -c 'cd "$1" && PORT=$2 bash scripts/dev.sh' _ "$dir" "$port" 2>&1) || status=$?
	[ "$status" = 1 ] && [ "$(echo "$second" | wc -l)" = 1 ] && echo "$second" | grep -q "already running" ||
		fail "second make run (status $status) said: $second"

	stop_run "$pid"
	pgrep -f "$data/pgdata" >/dev/null && fail "a process of $data/pgdata is left after SIGTERM"
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fail "port $port still taken after SIGTERM"

	# A rerun reuses the cluster with its data.
	pid=$(start_run "$user" "$dir" "$port" "$log")
	curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/tasks" | grep -q '"title":"kept"' || fail "the task did not survive a restart"
	stop_run "$pid"

	as "$user" bash -c 'cd "$1" && bash scripts/clean-dev.sh' _ "$dir" 2>/dev/null
	[ ! -e "$data/pgdata" ] && [ ! -e "$dir/.dev" ] || fail "make clean-dev left $data/pgdata or $dir/.dev"
	echo "test-dev: ok as ${user:-$(id -un)} (data was in $data)"
}

tmp=$(mktemp -d /tmp/todo-dev-test.XXXXXX) # mode 700
user= home=
cleanup() {
	rm -rf "$tmp"
	if [ -n "$user" ]; then
		pkill -u "$user" 2>/dev/null || true
		userdel -r "$user" 2>/dev/null || true
	fi
}
trap cleanup EXIT
mkdir "$tmp/checkout"
copy_checkout "$tmp/checkout"
check_case "" "$tmp/checkout"

if [ "$(id -u)" = 0 ]; then
	user=todo-dev-$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
	useradd -m -s /bin/bash "$user"
	home=$(getent passwd "$user" | cut -d: -f6)
	chmod 700 "$home"
	mkdir "$home/checkout"
	copy_checkout "$home/checkout"
	chown -R "$user": "$home/checkout"
	check_case "$user" "$home/checkout"
fi
