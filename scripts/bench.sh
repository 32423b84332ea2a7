#!/usr/bin/env bash
# make bench: the Go benchmarks (token verifier, task JSON encoder and
# decoder, every endpoint through the real handler stack) over a throwaway
# PostgreSQL. Extra arguments go to go test, e.g. -benchtime 3s.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

tmp=$(mktemp -d /tmp/todo-bench.XXXXXX)
chmod 755 "$tmp"
trap 'pg_stop "$tmp/data"; rm -rf "$tmp"' EXIT
pg_init "$tmp/data" "$tmp/sock" throwaway
pg_start "$tmp/data"
DATABASE_URL="host=$tmp/sock user=todo dbname=postgres sslmode=disable" \
	go test -run '^$' -bench . -benchmem "$@" .
