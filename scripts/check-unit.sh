#!/usr/bin/env bash
# check-unit.sh BINARY: systemd-analyze verify deploy/todo-backend.service,
# with its paths pointed at BINARY and the example environment file, and
# print its security exposure score.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "$1")
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "unit: systemd-analyze is not installed, so deploy/todo-backend.service was not verified (Debian: apt-get install systemd)" >&2
	if [ "${CI:-}" = true ]; then exit 1; fi
	exit 0
fi
dir=$(mktemp -d /tmp/todo-unit.XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed -e "s#/usr/local/bin/todo-backend#$binary#" -e "s#/etc/todo-backend/env#$PWD/deploy/env.example#" \
	deploy/todo-backend.service >"$dir/todo-backend.service"
systemd-analyze verify "$dir/todo-backend.service"
score=$(systemd-analyze security --offline=yes "$dir/todo-backend.service" 2>/dev/null | sed -n 's/.*Overall exposure level for todo-backend.service: //p')
echo "unit: deploy/todo-backend.service verifies; exposure ${score:-unknown}"
