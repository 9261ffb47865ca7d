#!/usr/bin/env bash
# Builds spire-server and spire-agent (SPIRE v1.13.3) from the Go module proxy, once,
# into ${ZT_CACHE_DIR:-$HOME/.cache/zt}/spire-1.13.3/bin/. Exits at once when both
# binaries are already there. Needs Go (1.24 or later, for `go get -tool`) and a C
# compiler (SPIRE's sqlite3 datastore uses cgo).
#
# The binaries are built under temporary names and renamed at the end, so an
# interrupted build never leaves a file that looks like a cached binary.
set -euo pipefail

SPIRE_VERSION=v1.13.3
CACHE_DIR="${ZT_CACHE_DIR:-$HOME/.cache/zt}"
DEST="$CACHE_DIR/spire-${SPIRE_VERSION#v}/bin"

if [[ -x "$DEST/spire-server" && -x "$DEST/spire-agent" ]]; then
    echo "spire $SPIRE_VERSION: cached in $DEST"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "error: go not found in PATH; SPIRE $SPIRE_VERSION is built from source with Go 1.24 or later" >&2
    exit 1
fi

start=$SECONDS
mkdir -p "$DEST"
work="$(mktemp -d "${TMPDIR:-/tmp}/zt-spire-build.XXXXXX")"
# Only this run's temporary binaries: another build may be running.
trap 'rm -rf "$work"; rm -f "$DEST/.spire-server.tmp.$$" "$DEST/.spire-agent.tmp.$$"' EXIT

echo "spire $SPIRE_VERSION: building into $DEST (takes a while on a small machine)"
cd "$work"
go mod init zt-interop-spire-build >/dev/null 2>&1
go get -tool "github.com/spiffe/spire/cmd/spire-server@$SPIRE_VERSION"
go get -tool "github.com/spiffe/spire/cmd/spire-agent@$SPIRE_VERSION"

for bin in spire-server spire-agent; do
    tmp="$DEST/.$bin.tmp.$$"
    go build -trimpath -o "$tmp" "github.com/spiffe/spire/cmd/$bin"
    "$tmp" --help >/dev/null 2>&1 || true # a smoke run: the binary loads
    echo "spire $SPIRE_VERSION: built $bin in $((SECONDS - start)) s"
done
# Rename only when both are built, so "both present" means "both complete".
for bin in spire-server spire-agent; do
    mv -f "$DEST/.$bin.tmp.$$" "$DEST/$bin"
done

echo "spire $SPIRE_VERSION: done in $((SECONDS - start)) s ($DEST)"
