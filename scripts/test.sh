#!/usr/bin/env bash
# make test: start a throwaway PostgreSQL and the Neon stand-in
# (scripts/neon-stack.sh), run the suite against them (scripts/gotest.sh),
# check the served OpenAPI document and make run (scripts/test-dev.sh),
# and stop everything again whatever happens.
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

# The suite, beside the local stand-in for Neon (TLS, SCRAM, PgBouncer)
# that neon_test.go runs against.
DATABASE_URL="host=$tmp/sock user=todo dbname=postgres sslmode=disable" bash scripts/neon-stack.sh bash scripts/gotest.sh "$@"

# The document the real binary serves must be valid OpenAPI.
go build -o "$tmp/todo-backend" .
DATABASE_URL="host=$tmp/sock user=todo dbname=postgres sslmode=disable" \
	BETTER_AUTH_SECRET=openapi-check-secret-of-at-least-32-bytes PORT=0 \
	"$tmp/todo-backend" 2>"$tmp/server.log" &
server=$!
addr=
for _ in $(seq 1 100); do
	addr=$(sed -n 's/.*"msg":"listening","addr":"[^"]*:\([0-9]*\)".*/127.0.0.1:\1/p' "$tmp/server.log")
	[ -n "$addr" ] && break
	sleep 0.1
done
curl -fsS "http://$addr/openapi.json" -o "$tmp/openapi.json"
kill -TERM "$server" && wait "$server"
bash scripts/check-openapi.sh "$tmp/openapi.json"

# make run and make clean-dev, as a new user meets them.
bash scripts/test-dev.sh
