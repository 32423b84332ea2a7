#!/usr/bin/env bash
# make image: the container image todo-backend:VERSION (and :latest) from
# Containerfile, with Debian's podman (installed with apt-get as root when
# missing). The image is the static binary of make build, the build host's
# CA bundle and a non-root user, FROM scratch: no base image is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v podman >/dev/null; then
	if [ "$(id -u)" != 0 ]; then
		echo "podman is needed: apt-get install podman runc" >&2
		exit 1
	fi
	echo "== installing podman and runc" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
make -s build
bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$bundle" ] || { echo "no CA bundle at $bundle: apt-get install ca-certificates" >&2; exit 1; }
cp "$bundle" bin/ca-certificates.crt
version=$(bin/todo-backend -version | cut -d' ' -f2)
podman build -q -f Containerfile -t "todo-backend:$version" -t todo-backend:latest . >/dev/null
echo "todo-backend:$version ($(podman image inspect --format '{{.Size}}' "todo-backend:$version" | awk '{printf "%.1f MB", $1 / 1e6}'))"
