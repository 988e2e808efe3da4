#!/usr/bin/env bash
# Install Debian's docker-compose (1.29) into a directory, without root, to validate
# deploy/compose.yaml offline (`docker-compose -f deploy/compose.yaml config`): no Docker
# engine is needed for that. `apt-get download` + `dpkg-deb -x`, like deploy/prometheus,
# of docker-compose and every Python package it depends on, run by Debian's python3.
#   deploy/compose/install.sh [DIR]      (default: .cache/docker-compose)
set -euo pipefail
dir="${1:-.cache/docker-compose}"
# Done already, unless this script changed since (then its wrapper is made anew).
if [ "$dir/bin/docker-compose" -nt "$0" ] && "$dir/bin/docker-compose" version >/dev/null 2>&1; then
    exit 0
fi
for tool in apt-get apt-cache dpkg-deb /usr/bin/python3; do
    command -v "$tool" >/dev/null || {
        echo "$tool not found: install docker-compose 1.29 (or Docker Compose v2) yourself and put it in $dir/bin" >&2
        exit 1
    }
done
# The package and its Python dependencies, as Debian's package lists say today (python3
# itself is the machine's).
packages=()
while read -r package; do
    case "$package" in
        docker-compose | python3-*) packages+=("$package") ;;
    esac
done < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances --no-pre-depends docker-compose 2>/dev/null | sort -u)
if [ "${#packages[@]}" -lt 2 ]; then
    echo "apt-cache knows no docker-compose package: run 'apt-get update' (as root) and try again" >&2
    exit 1
fi
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
# Debian splits distutils (which compose and docker-py import): python3.X's stdlib keeps
# __init__.py and version.py, python3-distutils (unpacked here) has the rest. Complete
# the unpacked copy, so that the machine need not have python3-distutils installed.
stdlib="$(/usr/bin/python3 -S -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
own="$root/usr/lib/$(basename "$stdlib")"
if [ -d "$own/distutils" ]; then
    cp -n "$stdlib"/distutils/*.py "$own/distutils/"
fi
cat >"$dir/bin/docker-compose" <<WRAPPER
#!/bin/sh
# Debian's docker-compose with its Python packages, unpacked by deploy/compose/install.sh;
# -S: only the standard library and these packages, none of the machine's site-packages.
PYTHONPATH="$root/usr/lib/python3/dist-packages:$own" exec /usr/bin/python3 -S "$root/usr/bin/docker-compose" "\$@"
WRAPPER
chmod +x "$dir/bin/docker-compose"
"$dir/bin/docker-compose" version | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail
