#!/usr/bin/env bash
# make clean-dev: stop and remove make run's local cluster, wherever it
# lives (.dev/ or its folder under /var/tmp), and the dev secret and binary
# in .dev/. The data is gone afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh

dev_paths
if [ -d "$dev_data/pgdata" ]; then
	pg_stop "$dev_data/pgdata"
fi
if [ "$dev_data" != "$dev" ] && [ -d "$dev_data" ]; then
	rm -rf "$dev_data"
	echo "removed $dev_data" >&2
fi
if [ -d "$dev" ]; then
	rm -rf "$dev"
	echo "removed $dev" >&2
fi
