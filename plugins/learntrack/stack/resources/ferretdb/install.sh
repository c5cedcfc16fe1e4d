#!/usr/bin/env bash
# Build FerretDB v1 (MongoDB wire protocol over the pure-Go SQLite backend)
# into TOOLS_DIR/ferretdb.  Idempotent: does nothing if a working binary is
# already there.
#
# Usage: install.sh TOOLS_DIR
#
# Needs: Go >= 1.24 (on PATH or at /usr/local/go/bin/go) and access to the Go
# module proxy.  No cgo, no git, no network other than the module proxy/sumdb.
#
# Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@...`:
# build/version/version.txt is generated upstream and absent from the module
# zip, so such a binary panics at start (upstream issue #2982).  We copy the
# module source, write the version files, apply two small fixes for upstream
# bugs (see README.md), and build from the copy.
set -euo pipefail

FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_VERSION="v1.24.2"
FERRETDB_COMMIT="cda72d440810406a208c4670aa7047f5bc8d528f"
# SQLite only: drop the PostgreSQL backend (smaller binary, faster build).
FERRETDB_TAGS="ferretdb_no_postgresql"
# Reported by `ferretdb --version` as "package:"; bump the suffix whenever the
# local patches below change, so that older builds get rebuilt.
FERRETDB_PACKAGE="learntrack-p2"

log() { printf 'ferretdb: %s\n' "$*"; }
die() { printf 'ferretdb: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 && -n "$1" ]] || die "usage: $0 TOOLS_DIR"
TOOLS_DIR="$1"
mkdir -p "$TOOLS_DIR" || die "cannot create $TOOLS_DIR"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd)"
BIN="$TOOLS_DIR/ferretdb"

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
    have="$("$BIN" --version 2>/dev/null || true)"
    if grep -qx "version: $FERRETDB_VERSION" <<<"$have" && grep -qx "package: $FERRETDB_PACKAGE" <<<"$have"; then
        log "already installed"
        exit 0
    fi
    log "existing $BIN is not $FERRETDB_VERSION/$FERRETDB_PACKAGE; rebuilding"
fi

# --- Go toolchain ------------------------------------------------------------
GO="$(command -v go || true)"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; fi
[[ -n "$GO" ]] || die "Go toolchain not found (need Go >= 1.24 on PATH or at /usr/local/go/bin/go)"

# Never try to download another toolchain; use the installed one.
export GOTOOLCHAIN=local
# Pure-Go build (modernc.org/sqlite): static binary, no C compiler needed.
export CGO_ENABLED=0
# No VCS stamping (the copied source is not a git checkout); ignore any
# caller GOFLAGS that could break a module-mode build (e.g. -mod=vendor).
export GOFLAGS="-buildvcs=false -mod=readonly"

# Use the default Go caches (fast rebuilds); fall back to TOOLS_DIR only when
# the environment gives Go no place for them (e.g. HOME unset).
gocache="$("$GO" env GOCACHE 2>/dev/null || true)"
if [[ -z "$gocache" || "$gocache" == off ]]; then
    export GOCACHE="$TOOLS_DIR/.go-cache/build"
fi
if [[ -z "$("$GO" env GOPATH 2>/dev/null || true)" ]]; then
    export GOPATH="$TOOLS_DIR/.go-cache/gopath"   # also holds the sumdb state
fi
if [[ -z "$("$GO" env GOMODCACHE 2>/dev/null || true)" ]]; then
    export GOMODCACHE="$TOOLS_DIR/.go-cache/mod"
fi

gover="$("$GO" env GOVERSION 2>/dev/null || true)"
[[ "$gover" =~ ^go1\.([0-9]+) ]] || die "cannot determine Go version (got '$gover')"
(( BASH_REMATCH[1] >= 24 )) || die "Go >= 1.24 required, found $gover"
log "using $gover ($GO)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferretdb-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# --- Source --------------------------------------------------------------------
log "downloading $FERRETDB_MODULE@$FERRETDB_VERSION"
json="$("$GO" mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" 2>&1)" \
    || die "go mod download failed: $json"
moddir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
[[ -n "$moddir" && -f "$moddir/go.mod" ]] || die "module download gave no source dir: $json"

SRC="$WORK/src"
cp -R "$moddir" "$SRC"
chmod -R u+w "$SRC"
printf '%s\n' "$FERRETDB_VERSION" >"$SRC/build/version/version.txt"
printf '%s\n' "$FERRETDB_COMMIT" >"$SRC/build/version/commit.txt"
printf '%s\n' "$FERRETDB_PACKAGE" >"$SRC/build/version/package.txt"

# --- Local patches (two upstream bugs in v1.24.2) ----------------------------
# replace_once FILE: replaces the text in $old with $new; fails unless $old
# occurs in FILE (so a changed upstream source is noticed, not mis-patched).
replace_once() {
    local f="$1" s
    s="$(<"$f")"
    [[ "$s" == *"$old"* ]] || die "patch does not apply to $f"
    printf '%s\n' "${s/"$old"/"$new"}" >"$f"
}

# 1. SQLite: queries/updates/deletes by _id compare `_ferretdb_sjson->'$._id'`
#    but the unique _id index is on `_ferretdb_sjson->"_id"`; SQLite matches
#    index expressions textually, so every _id lookup was a full table scan.
#    `->'_id'` is the same JSON path and matches the index.
log "patching: _id lookups use the _id index (SQLite backend)"
old="IDColumn = DefaultColumn + \"->'\$._id'\""
new="IDColumn = DefaultColumn + \"->'_id'\""
replace_once "$SRC/internal/backends/sqlite/metadata/metadata.go"

# 2. $group: all accumulators shared one iterator over the group's documents,
#    so only the first accumulator saw them and every later one returned 0
#    (e.g. {n: {$sum: 1}, total: {$sum: "$x"}} gave total 0).
log "patching: \$group evaluates every accumulator"
old=$'\t\tgroupIter := iterator.Values(iterator.ForSlice(groupedDocument.documents))\n\t\tdefer groupIter.Close()\n\n\t\tfor _, accumulation := range g.groupBy {\n\t\t\tout, err := accumulation.accumulator.Accumulate(groupIter)\n'
new=$'\t\tfor _, accumulation := range g.groupBy {\n\t\t\tgroupIter := iterator.Values(iterator.ForSlice(groupedDocument.documents))\n\t\t\tout, err := accumulation.accumulator.Accumulate(groupIter)\n\t\t\tgroupIter.Close()\n'
replace_once "$SRC/internal/handler/common/aggregations/stages/group.go"

# --- Build ---------------------------------------------------------------------
log "building (tags: $FERRETDB_TAGS; fetches dependencies; a cold build takes a few minutes)"
start=$SECONDS
(cd "$SRC" && "$GO" build -trimpath -tags="$FERRETDB_TAGS" -ldflags="-s -w" \
    -o "$WORK/ferretdb" ./cmd/ferretdb) || die "go build failed"
log "built in $((SECONDS - start))s"

have="$("$WORK/ferretdb" --version 2>&1)" || die "built binary does not run: $have"
grep -qx "version: $FERRETDB_VERSION" <<<"$have" && grep -qx "package: $FERRETDB_PACKAGE" <<<"$have" \
    || die "built binary reports an unexpected version: $have"

install -m 0755 "$WORK/ferretdb" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
log "installed $BIN ($(du -h "$BIN" | cut -f1))"
