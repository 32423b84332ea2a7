#!/usr/bin/env bash
# pgbouncer.sh: print the path of a PgBouncer 1.21 or later (the first that
# holds prepared statements in transaction mode, as Neon's pooler does),
# building it once if there is none.
#
#   PGBOUNCER          an existing binary to use instead (checked for 1.21+)
#   PGBOUNCER_SOURCE   the source tarball (default: shared/vendor/ beside the
#                      checkout, pgbouncer-1.24.1.tar.gz)
#
# The build (about 2 minutes on 2 cores) goes into a cache outside the
# checkout: /var/cache/todo-backend as root (PostgreSQL's user must be able
# to run it), else ~/.cache/todo-backend. It needs Debian's libevent-dev,
# libssl-dev and pkg-config, which it installs as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# new_enough BINARY: its version is 1.21 or later.
new_enough() {
	local version
	version=$("$1" --version 2>/dev/null | sed -n 's/^PgBouncer \([0-9][0-9.]*\).*/\1/p' | head -1)
	[ -n "$version" ] && printf '1.21\n%s\n' "$version" | sort -V -C
}

if [ -n "${PGBOUNCER:-}" ]; then
	if ! new_enough "$PGBOUNCER"; then
		echo "pgbouncer.sh: PGBOUNCER=$PGBOUNCER is not PgBouncer 1.21 or later" >&2
		exit 1
	fi
	echo "$PGBOUNCER"
	exit 0
fi

version=1.24.1
if [ "$(id -u)" = 0 ]; then
	cache=/var/cache/todo-backend
else
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/todo-backend
fi
binary=$cache/pgbouncer-$version/pgbouncer
if [ -x "$binary" ] && new_enough "$binary"; then
	echo "$binary"
	exit 0
fi

source=${PGBOUNCER_SOURCE:-$(cd .. && pwd)/shared/vendor/pgbouncer-$version.tar.gz}
if [ ! -f "$source" ]; then
	echo "pgbouncer.sh: no PgBouncer 1.21+ and no source at $source: set PGBOUNCER to a binary or PGBOUNCER_SOURCE to pgbouncer-$version.tar.gz" >&2
	exit 1
fi
missing=()
for pkg in libevent-dev libssl-dev pkg-config make gcc; do
	dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "pgbouncer.sh: building PgBouncer needs: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "pgbouncer.sh: installing ${missing[*]}" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "pgbouncer.sh: building PgBouncer $version into $cache (once; about 2 minutes)" >&2
build=$(mktemp -d /tmp/todo-pgbouncer-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
tar -xzf "$source" -C "$build"
(
	cd "$build/pgbouncer-$version"
	./configure --without-cares --without-pam --without-ldap --without-systemd --disable-evdns --with-openssl >configure.log 2>&1 ||
		{ tail -20 configure.log >&2; exit 1; }
	make -j"$(nproc)" pgbouncer >make.log 2>&1 || { tail -20 make.log >&2; exit 1; }
)
mkdir -p "$cache/pgbouncer-$version"
install -m 755 "$build/pgbouncer-$version/pgbouncer" "$binary.tmp"
mv "$binary.tmp" "$binary"
chmod 755 "$cache" "$cache/pgbouncer-$version"
new_enough "$binary" || { echo "pgbouncer.sh: the build did not give PgBouncer 1.21+" >&2; exit 1; }
echo "$binary"
