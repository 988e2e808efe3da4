#!/usr/bin/env bash
# Install the AsyncAPI project's parser (@asyncapi/parser, pinned by package-lock.json
# beside this script) into a directory with `npm ci`, for validate.mjs:
#   deploy/asyncapi/install.sh [DIR]      (default: .cache/asyncapi)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-.cache/asyncapi}"
command -v npm >/dev/null || {
    echo "npm not found: the AsyncAPI document is validated with @asyncapi/parser on Node.js 18+; install nodejs and npm (e.g. apt-get install nodejs npm)" >&2
    exit 1
}
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
# --ignore-scripts: the parser needs no install step, and none of its dependencies runs one.
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
node -e 'console.log("@asyncapi/parser " + require(process.argv[1]).version)' \
    "$(cd "$dir" && pwd)/node_modules/@asyncapi/parser/package.json"
