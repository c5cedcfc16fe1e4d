#!/usr/bin/env bash
# Build FerretDB v1 (MongoDB wire protocol; one binary with both backends:
# pure-Go SQLite, --handler=sqlite, and PostgreSQL, --handler=postgresql)
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
# module source, write the version files, apply six small patches (upstream
# bugs and PostgreSQL index use, see README.md), and build from the copy.
set -euo pipefail

FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_VERSION="v1.24.2"
FERRETDB_COMMIT="cda72d440810406a208c4670aa7047f5bc8d528f"
# Default build tags: SQLite and PostgreSQL backends (no HANA).
FERRETDB_TAGS=""
# Reported by `ferretdb --version` as "package:"; bump the suffix whenever the
# local patches below change, so that older builds get rebuilt.
FERRETDB_PACKAGE="learntrack-p7"

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

# --- Local patches (v1.24.2) -------------------------------------------------
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

# 3. PostgreSQL: {_id: <string|ObjectId>} is pushed down as
#    `_jsonb->'_id' @> $n`, which the unique btree index on (_jsonb->'_id')
#    cannot serve (btree has no @>): every _id lookup was a seq scan.  An _id
#    is never an array, so `=` is equivalent and uses the index.
log "patching: _id equality uses the _id btree index (PostgreSQL backend)"
old=$'\t\tcase float64, string, types.ObjectID, bool, time.Time, int32, int64:\n\t\t\tif f, a := filterEqual(p, key, v, keyOperator); f != "" {'
new=$'\t\tcase float64, string, types.ObjectID, bool, time.Time, int32, int64:\n\t\t\tswitch v.(type) {\n\t\t\tcase string, types.ObjectID:\n\t\t\t\tif rootKey == "_id" {\n\t\t\t\t\tfilters = append(filters, metadata.IDColumn+" = "+p.Next())\n\t\t\t\t\targs = append(args, string(must.NotFail(sjson.MarshalSingleValue(v))))\n\n\t\t\t\t\tcontinue\n\t\t\t\t}\n\t\t\t}\n\n\t\t\tif f, a := filterEqual(p, key, v, keyOperator); f != "" {'
replace_once "$SRC/internal/backends/postgresql/query.go"

# 4. PostgreSQL: createIndexes makes btree indexes on ((_jsonb->'f')), but
#    equality is pushed down as `_jsonb->'f' @> $n` (`_jsonb #> '{a,b}' @> $n`
#    for dotted fields), which only a GIN index can serve, so secondary
#    indexes were never used.  Every index whose first key is not _id also
#    gets a companion `USING gin ((<first key expr>) jsonb_path_ops) WITH
#    (fastupdate = off)` (no pending list that every query must scan) named
#    like the btree with `_idx` -> `_gin`; dropIndexes drops it too (drop of a
#    collection/database drops it with the table/schema).  Not in FerretDB's
#    metadata, so listIndexes and friends do not show it.
log "patching: indexes get a companion GIN index on their first key (PostgreSQL backend)"
reg="$SRC/internal/backends/postgresql/metadata/registry.go"
old=$'\t\tif _, err = p.Exec(ctx, q); err != nil {\n\t\t\t_ = r.indexesDrop(ctx, p, dbName, collectionName, created)\n\t\t\treturn lazyerrors.Error(err)\n\t\t}\n'
new="$old"$'\n\t\tif gq := ginIndexQuery(dbName, c.TableName, index); gq != "" {\n\t\t\tif _, err = p.Exec(ctx, gq); err != nil {\n\t\t\t\t_, _ = p.Exec(ctx, fmt.Sprintf("DROP INDEX IF EXISTS %s", pgx.Identifier{dbName, index.PgIndex}.Sanitize()))\n\t\t\t\t_ = r.indexesDrop(ctx, p, dbName, collectionName, created)\n\t\t\t\treturn lazyerrors.Error(err)\n\t\t\t}\n\t\t}\n'
replace_once "$reg"
old=$'\t\tq := fmt.Sprintf("DROP INDEX %s", pgx.Identifier{dbName, c.Indexes[i].PgIndex}.Sanitize())\n'
new=$'\t\tgq := fmt.Sprintf("DROP INDEX IF EXISTS %s", pgx.Identifier{dbName, ginIndexName(c.Indexes[i].PgIndex)}.Sanitize())\n\t\tif _, err := p.Exec(ctx, gq); err != nil {\n\t\t\treturn lazyerrors.Error(err)\n\t\t}\n\n'"$old"
replace_once "$reg"
old=$'// quoteString returns a string that is safe to use in SQL queries.\n'
new=$'// ginIndexName returns the name of the companion GIN index of btree index pgIndex\n// (names made by indexesCreate end with "_<hash>_idx"; same length, so no truncation).\nfunc ginIndexName(pgIndex string) string {\n\treturn strings.TrimSuffix(pgIndex, "_idx") + "_gin"\n}\n\n// ginIndexQuery returns CREATE INDEX for the companion GIN index on the first key of index,\n// on the same expression that prepareWhereClause pushes down for equality, or "" for _id.\nfunc ginIndexQuery(dbName, tableName string, index IndexInfo) string {\n\tif len(index.Key) == 0 || index.Key[0].Field == "_id" {\n\t\treturn ""\n\t}\n\n\tfs := strings.Split(index.Key[0].Field, ".")\n\tfor j, f := range fs {\n\t\tfs[j] = quoteString(f)\n\t}\n\n\texpr := DefaultColumn + "->" + fs[0]\n\tif len(fs) > 1 {\n\t\texpr = DefaultColumn + " #> ARRAY[" + strings.Join(fs, ", ") + "]::text[]"\n\t}\n\n\treturn fmt.Sprintf(\n\t\t"CREATE INDEX %s ON %s USING gin ((%s) jsonb_path_ops) WITH (fastupdate = off)",\n\t\tpgx.Identifier{ginIndexName(index.PgIndex)}.Sanitize(),\n\t\tpgx.Identifier{dbName, tableName}.Sanitize(),\n\t\texpr,\n\t)\n}\n\n'"$old"
replace_once "$reg"

# 5. PostgreSQL: queries run as cached prepared statements whose SQL text
#    does not name the field (`_jsonb->$1 @> $2`).  After 5 runs PostgreSQL
#    may switch a statement to a generic plan, which cannot match any
#    expression index; once a connection has run a few seq-scan queries of
#    that shape (an unindexed field, or before an index existed) it keeps
#    seq-scanning every field.  Default plan_cache_mode=force_custom_plan on
#    FerretDB's connections (a plan_cache_mode in --postgresql-url wins).
log "patching: connections use plan_cache_mode=force_custom_plan (PostgreSQL backend)"
old=$'\tvalues.Set("application_name", "FerretDB")\n'
new="$old"$'\n\tif !values.Has("plan_cache_mode") {\n\t\tvalues.Set("plan_cache_mode", "force_custom_plan")\n\t}\n'
replace_once "$SRC/internal/backends/postgresql/metadata/pool/uri.go"

# 6. update (upstream bug, both backends; fatal with PostgreSQL): the
#    `update` command ran every statement's query with `defer closer.Close()`
#    inside its loop, so each query iterator (an open pgx result holding a
#    pooled connection) stayed open until the whole command returned.  For a
#    non-multi statement that matches a document (ReplaceOne/UpdateOne on an
#    existing doc) the limit iterator stops after one row and never reaches
#    the end of the result, so the connection stays checked out while the
#    write (UpdateAll, a transaction) needs a second one.  The 50th such
#    statement in one command found the pool (pool_max_conns=50) exhausted
#    and waited in pgxpool Acquire forever (the client's disconnect does not
#    cancel a running command), and every other request then queued behind
#    the 50 held, idle connections until FerretDB was restarted.  Now a
#    non-multi statement reads its (at most one) document and closes the
#    query before writing, and every statement's iterators are closed before
#    the next statement runs (multi statements still read while writing:
#    two connections at a time, released per statement).
#    findAndModify (find_one_and_update/replace/delete) had the same
#    read-while-write: one held query connection plus one for the write, so
#    >= 50 concurrent calls could each hold one and all wait for a second
#    (seen with 100 client threads, also upstream).  It now reads its one
#    document (as its sort path already did) and closes the query first.
log "patching: update and findAndModify release the query connection before writing (upstream pool deadlock)"
old=$'\t\tcloser := iterator.NewMultiCloser()\n\t\tdefer closer.Close()\n\n\t\tcloser.Add(res.Iter)\n\n\t\titer := common.FilterIterator(res.Iter, closer, u.Filter)\n\n\t\tif !u.Multi {\n\t\t\titer = common.LimitIterator(iter, closer, 1)\n\t\t}\n\n\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n\t\tif err != nil {\n'
new=$'\t\tcloser := iterator.NewMultiCloser()\n\n\t\tcloser.Add(res.Iter)\n\n\t\titer := common.FilterIterator(res.Iter, closer, u.Filter)\n\n\t\tif !u.Multi {\n\t\t\t// read the (at most one) matching document, then release the query\'s connection before writing\n\t\t\tvar docs []*types.Document\n\t\t\tdocs, err = iterator.ConsumeValues(common.LimitIterator(iter, closer, 1))\n\t\t\tcloser.Close()\n\n\t\t\tif err != nil {\n\t\t\t\treturn 0, 0, nil, lazyerrors.Error(err)\n\t\t\t}\n\n\t\t\titer = iterator.Values(iterator.ForSlice(docs))\n\t\t}\n\n\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n\n\t\titer.Close()\n\t\tcloser.Close()\n\n\t\tif err != nil {\n'
replace_once "$SRC/internal/handler/msg_update.go"
old=$'\t// findAndModify modifies a single document\n\titer = common.LimitIterator(iter, closer, 1)\n'
new="$old"$'\n\t// read that document, then release the query\'s connection before writing\n\tdocs, err := iterator.ConsumeValues(iter)\n\tif err != nil {\n\t\treturn nil, lazyerrors.Error(err)\n\t}\n\n\titer = iterator.Values(iterator.ForSlice(docs))\n\tcloser.Add(iter)\n'
replace_once "$SRC/internal/handler/msg_findandmodify.go"

# --- Build ---------------------------------------------------------------------
log "building (tags: ${FERRETDB_TAGS:-default}; fetches dependencies; a cold build takes a few minutes)"
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
