#!/usr/bin/env bash
# make test: start a throwaway PostgreSQL, run the suite against it
# (scripts/gotest.sh), and stop it again whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

tmp=$(mktemp -d /tmp/todo-test.XXXXXX)
chmod 755 "$tmp"
cleanup() {
	pg_stop "$tmp/data"
	rm -rf "$tmp"
}
trap cleanup EXIT

pg_init "$tmp/data" "$tmp/sock" throwaway
pg_start "$tmp/data"

DATABASE_URL="host=$tmp/sock user=todo dbname=postgres sslmode=disable" bash scripts/gotest.sh "$@"
