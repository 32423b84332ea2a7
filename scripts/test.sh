#!/usr/bin/env bash
# make test: start a throwaway PostgreSQL, run the whole suite with the race
# detector and coverage against it, and stop it again whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

min_coverage=${MIN_COVERAGE:-80}
tmp=$(mktemp -d /tmp/todo-test.XXXXXX)
chmod 755 "$tmp"
cleanup() {
	pg_stop "$tmp/data"
	rm -rf "$tmp"
}
trap cleanup EXIT

pg_init "$tmp/data" "$tmp/sock" throwaway
pg_start "$tmp/data"

export DATABASE_URL="host=$tmp/sock user=todo dbname=postgres sslmode=disable"
go test -race -covermode=atomic -coverprofile="$tmp/cover.out" "$@" ./...

total=$(go tool cover -func="$tmp/cover.out" | awk '/^total:/ {sub("%", "", $3); print $3}')
echo "statement coverage: ${total}% (minimum ${min_coverage}%)"
awk -v t="$total" -v m="$min_coverage" 'BEGIN { exit !(t + 0 >= m + 0) }' || {
	echo "coverage ${total}% is below ${min_coverage}%" >&2
	exit 1
}
