#!/usr/bin/env bash
# Install Debian's Prometheus package (prometheus + promtool) into a directory, without
# root and without starting a service: `apt-get download` + `dpkg-deb -x`.
#   deploy/prometheus/install.sh [DIR]      (default: .cache/prometheus)
set -euo pipefail
dir="${1:-.cache/prometheus}"
if [ -x "$dir/usr/bin/prometheus" ] && [ -x "$dir/usr/bin/promtool" ]; then
    exit 0
fi
for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || {
        echo "$tool not found: install Prometheus 2.x yourself and put prometheus and promtool in $dir/usr/bin" >&2
        exit 1
    }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >"$work/apt.log" 2>&1); then
    cat "$work/apt.log" >&2
    echo "could not download Debian's prometheus package: run 'apt-get update' (as root) and try again" >&2
    exit 1
fi
mkdir -p "$dir"
dpkg-deb -x "$work"/prometheus_*.deb "$dir"
"$dir/usr/bin/promtool" --version | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail
