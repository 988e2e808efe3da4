#!/usr/bin/env bash
# Build the local and test schema registry (main.go beside this script: Conduit's Schema
# Registry, in memory) from the Go module proxy, pinned by go.sum:
#   deploy/schema_registry/build.sh [BINARY]   (default: .cache/schema-registry/riverrun-schema-registry)
# Go's module and build caches stay beside the binary, so nothing is written under $HOME.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-.cache/schema-registry/riverrun-schema-registry}"
command -v go >/dev/null || {
    echo "go not found: the local schema registry is built from source with Go 1.23 or later; install it from https://go.dev/dl/ (or your distribution's golang-go if it is 1.23+)" >&2
    exit 1
}
mkdir -p "$(dirname "$binary")"
out="$(cd "$(dirname "$binary")" && pwd)"
# The user's `go env -w` settings (a company's GOPROXY...) still apply; Go's telemetry
# counters, kept in the user config directory, go to the cache instead.
export GOENV="${GOENV:-${XDG_CONFIG_HOME:-$HOME/.config}/go/env}"
export XDG_CONFIG_HOME="$out/go/config"
export GOPATH="$out/go" GOMODCACHE="$out/go/pkg/mod" GOCACHE="$out/go/cache"
# -mod=readonly: build exactly what go.sum pins; -modcacherw: `make clean` can delete it.
export GOFLAGS="-mod=readonly -modcacherw"
(cd "$here" && go build -trimpath -ldflags="-s -w" -o "$out/$(basename "$binary")" .)
touch "$out/$(basename "$binary")"  # go leaves an up-to-date binary as it was: make needs it newer
echo "built $binary ($(go version | cut -d' ' -f3))"
