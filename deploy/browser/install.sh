#!/usr/bin/env bash
# Install Debian's Chromium into a directory, without root, for the browser tests of the
# docs site and of `riverrun report`: `apt-get download` + `dpkg-deb -x`, like
# deploy/prometheus, of chromium and those of its libraries this machine lacks, run
# through a wrapper that finds them.
#   deploy/browser/install.sh [DIR]      (default: .cache/chromium; runs DIR/bin/chromium)
set -euo pipefail
dir="${1:-.cache/chromium}"
# Done already, unless this script changed since (then it is unpacked anew).
if [ "$dir/bin/chromium" -nt "$0" ] && "$dir/bin/chromium" --version >/dev/null 2>&1; then
    exit 0
fi
for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || {
        echo "$tool not found: install Chromium yourself and link it as $dir/bin/chromium" >&2
        exit 1
    }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# chromium and whatever apt would install with it here (the libraries the machine lacks).
download() {
    rm -f "$work"/*.deb
    local packages=(chromium chromium-common)
    while read -r package; do
        packages+=("$package")
    done < <(apt-get install --simulate --no-install-recommends chromium 2>/dev/null |
        awk '/^Inst / && $2 != "chromium" && $2 != "chromium-common" {print $2}')
    (cd "$work" && apt-get download "${packages[@]}" >"$work/apt.log" 2>&1)
}
# Chromium's security updates replace its package often: package lists older than the
# last one name a version the archive no longer has. As root, refresh them and retry.
if ! download && ! { [ "$(id -u)" = 0 ] && apt-get update -qq >"$work/update.log" 2>&1 && download; }; then
    cat "$work/apt.log" >&2
    echo "could not download Debian's chromium packages: run 'apt-get update' (as root) and try again" >&2
    exit 1
fi
rm -rf "$dir"
mkdir -p "$dir/bin"
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$dir/root"
done
root="$(cd "$dir/root" && pwd)"
libraries="$(find "$root/usr/lib" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)"
cat >"$dir/bin/chromium" <<WRAPPER
#!/bin/sh
# Debian's Chromium with the libraries unpacked beside it by deploy/browser/install.sh.
LD_LIBRARY_PATH="$libraries\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$root/usr/lib/chromium/chromium" "\$@"
WRAPPER
chmod +x "$dir/bin/chromium"
if ! "$dir/bin/chromium" --version >"$work/version.log" 2>&1; then
    cat "$work/version.log" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "the unpacked Chromium does not start: install Debian's chromium package (apt-get install chromium, as root) and run this again" >&2
        exit 1
    fi
    # As root, Debian's own install brings every library it needs.
    apt-get install -y --no-install-recommends chromium >"$work/apt.log" 2>&1 || {
        cat "$work/apt.log" >&2
        echo "apt-get install chromium failed: run 'apt-get update' and try again" >&2
        exit 1
    }
    printf '#!/bin/sh\nexec /usr/lib/chromium/chromium "$@"\n' >"$dir/bin/chromium"
fi
"$dir/bin/chromium" --version
