#!/usr/bin/env bash
# Install Debian's docker-compose (1.29) into a directory, without root, to validate
# deploy/compose.yaml offline (`docker-compose -f deploy/compose.yaml config`): no Docker
# engine is needed for that. `apt-get download` + `dpkg-deb -x`, like deploy/prometheus.
#   deploy/compose/install.sh [DIR]      (default: .cache/docker-compose)
set -euo pipefail
dir="${1:-.cache/docker-compose}"
if [ -x "$dir/bin/docker-compose" ] && "$dir/bin/docker-compose" version >/dev/null 2>&1; then
    exit 0
fi
for tool in apt-get dpkg-deb /usr/bin/python3; do
    command -v "$tool" >/dev/null || {
        echo "$tool not found: install docker-compose 1.29 (or Docker Compose v2) yourself and put it in $dir/bin" >&2
        exit 1
    }
done
packages=(docker-compose python3-cached-property python3-distro python3-docker
    python3-dockerpty python3-docopt python3-dotenv python3-jsonschema python3-requests
    python3-texttable python3-websocket python3-yaml python3-attr python3-pyrsistent
    python3-urllib3 python3-idna python3-certifi python3-charset-normalizer python3-six
    python3-chardet python3-packaging)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download "${packages[@]}" >"$work/apt.log" 2>&1); then
    cat "$work/apt.log" >&2
    echo "could not download Debian's docker-compose packages: run 'apt-get update' (as root) and try again" >&2
    exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/bin"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$dir/root"
done
root="$(cd "$dir/root" && pwd)"
cat >"$dir/bin/docker-compose" <<WRAPPER
#!/bin/sh
# Debian's docker-compose with its Python packages, unpacked by deploy/compose/install.sh.
PYTHONPATH="$root/usr/lib/python3/dist-packages" exec /usr/bin/python3 "$root/usr/bin/docker-compose" "\$@"
WRAPPER
chmod +x "$dir/bin/docker-compose"
"$dir/bin/docker-compose" version | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail
