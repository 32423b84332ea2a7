#!/usr/bin/env bash
# The suite itself: go test -race with coverage against the PostgreSQL named
# by DATABASE_URL (the tests create and drop a database of their own there),
# failing below the coverage floor. make test and the GitHub workflow both
# run it; make test first starts a throwaway PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
	echo "DATABASE_URL is not set: use make test, or point it at a PostgreSQL where the tests may create a database" >&2
	exit 1
fi
min_coverage=${MIN_COVERAGE:-80}
profile=$(mktemp /tmp/todo-cover.XXXXXX)
trap 'rm -f "$profile"' EXIT

go test -race -covermode=atomic -coverprofile="$profile" "$@" ./...

total=$(go tool cover -func="$profile" | awk '/^total:/ {sub("%", "", $3); print $3}')
echo "statement coverage: ${total}% (minimum ${min_coverage}%)"
awk -v t="$total" -v m="$min_coverage" 'BEGIN { exit !(t + 0 >= m + 0) }' || {
	echo "coverage ${total}% is below ${min_coverage}%" >&2
	exit 1
}
