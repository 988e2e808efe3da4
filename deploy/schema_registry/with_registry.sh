#!/usr/bin/env bash
# Run a command beside the local schema registry (built by `make schema-registry`): start it
# on 127.0.0.1:$REGISTRY_PORT (default 18081), export RIVERRUN_SCHEMA_REGISTRY_URL, run the
# command, then stop the registry, also when the command fails or is interrupted.
#   deploy/schema_registry/with_registry.sh CMD [ARGS...]
# The registry keeps its schemas in memory: they are gone when it stops.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="${REGISTRY_BINARY:-$(cd "$here/../.." && pwd)/.cache/schema-registry/riverrun-schema-registry}"
port="${REGISTRY_PORT:-18081}"
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
[ -x "$binary" ] || { echo "$binary not found: run 'make schema-registry' first" >&2; exit 1; }
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken: set REGISTRY_PORT to a free one" >&2
    exit 1
fi
log="$(dirname "$binary")/registry.log"
"$binary" -addr "127.0.0.1:$port" >"$log" 2>&1 &
registry=$!
trap 'kill "$registry" 2>/dev/null || true; wait "$registry" 2>/dev/null || true' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$registry" 2>/dev/null || [ "$SECONDS" -gt 10 ]; then
        cat "$log" >&2
        echo "the schema registry did not start on 127.0.0.1:$port" >&2
        exit 1
    fi
    sleep 0.05
done
export RIVERRUN_SCHEMA_REGISTRY_URL="http://127.0.0.1:$port"
echo "schema registry on $RIVERRUN_SCHEMA_REGISTRY_URL (in memory; log: $log)" >&2
status=0
"$@" || status=$?
exit "$status"
