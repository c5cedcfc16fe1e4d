#!/usr/bin/env bash
# Install Apache Cassandra 5.0.x server jars into TOOLS_DIR using Maven only (no Docker, no tarball download
# outside Maven). Idempotent: a complete install is marked by TOOLS_DIR/.cassandra-installed (written last).
#
# Usage: install.sh TOOLS_DIR
# Env:   CASSANDRA_VERSION (default 5.0.9), MVN (default mvn), MVN_EXTRA_ARGS (e.g. -Dmaven.repo.local=...)
#
# Result: TOOLS_DIR/lib/*.jar (classpath), TOOLS_DIR/jamm.jar (the -javaagent), TOOLS_DIR/.cassandra-installed
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 TOOLS_DIR" >&2
  exit 2
fi

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
TOOLS_DIR="$(cd "$1" && pwd)"
VERSION="${CASSANDRA_VERSION:-5.0.9}"
MVN="${MVN:-mvn}"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
MARKER="$TOOLS_DIR/.cassandra-installed"
# shellcheck disable=SC2206
EXTRA=(${MVN_EXTRA_ARGS:-})

if [[ -f "$MARKER" ]]; then
  echo "cassandra: already installed ($(head -n1 "$MARKER")) in $TOOLS_DIR"
  exit 0
fi

command -v "$MVN" >/dev/null 2>&1 || { echo "cassandra: ERROR: '$MVN' not found on PATH" >&2; exit 1; }
command -v java >/dev/null 2>&1 || { echo "cassandra: ERROR: 'java' not found on PATH" >&2; exit 1; }

# Start from a clean slate: anything here without the marker is a partial install.
rm -rf "$TOOLS_DIR/lib" "$TOOLS_DIR/dist" "$TOOLS_DIR/download" "$TOOLS_DIR/jamm.jar" "$TOOLS_DIR/mvn.log"
mkdir -p "$TOOLS_DIR/lib"
LOG="$TOOLS_DIR/mvn.log"
SOURCE=""

# 1) Binary tarball, if Maven can resolve it (as of 2025 it is NOT published on Maven Central).
echo "cassandra: trying binary tarball org.apache.cassandra:apache-cassandra:$VERSION:tar.gz:bin ..."
if "$MVN" -B -q -Dstyle.color=never "${EXTRA[@]}" "$DEP_PLUGIN:copy" \
     -Dartifact="org.apache.cassandra:apache-cassandra:$VERSION:tar.gz:bin" \
     -DoutputDirectory="$TOOLS_DIR/download" >"$LOG" 2>&1; then
  echo "cassandra: tarball resolved, unpacking"
  mkdir -p "$TOOLS_DIR/dist"
  tar -xzf "$TOOLS_DIR/download/apache-cassandra-$VERSION-bin.tar.gz" -C "$TOOLS_DIR/dist" --strip-components=1
  cp "$TOOLS_DIR"/dist/lib/*.jar "$TOOLS_DIR/lib/"
  rm -rf "$TOOLS_DIR/download"
  SOURCE="tarball"
else
  echo "cassandra: tarball not available from Maven; resolving cassandra-all:$VERSION runtime dependencies"
  # -U: retry artifacts whose earlier failure Maven cached (otherwise a transient error sticks for a day).
  if ! "$MVN" -B -q -U -Dstyle.color=never "${EXTRA[@]}" -f "$SCRIPT_DIR/pom.xml" "$DEP_PLUGIN:copy-dependencies" \
       -Dcassandra.version="$VERSION" -DincludeScope=runtime \
       -DoutputDirectory="$TOOLS_DIR/lib" >"$LOG" 2>&1; then
    echo "cassandra: ERROR: mvn failed to resolve org.apache.cassandra:cassandra-all:$VERSION (log: $LOG):" >&2
    { grep -m 1 -F '[ERROR]' "$LOG" || tail -n 15 "$LOG"; } | sed 's/\x1b\[[0-9;]*m//g' >&2
    exit 1
  fi
  SOURCE="cassandra-all"
fi
rm -rf "$TOOLS_DIR/download"

# Sanity checks: the server jar and the jamm agent must be there.
server_jar="$(ls "$TOOLS_DIR"/lib/cassandra-all-*.jar "$TOOLS_DIR"/lib/apache-cassandra-[0-9]*.jar 2>/dev/null | head -n1 || true)"
jamm_jar="$(ls "$TOOLS_DIR"/lib/jamm-*.jar 2>/dev/null | head -n1 || true)"
if [[ -z "$server_jar" || -z "$jamm_jar" ]]; then
  echo "cassandra: ERROR: install incomplete (server jar: '${server_jar:-missing}', jamm: '${jamm_jar:-missing}')" >&2
  exit 1
fi
cp "$jamm_jar" "$TOOLS_DIR/jamm.jar"
echo "cassandra: $(ls "$TOOLS_DIR/lib" | wc -l) jars, $(du -sh "$TOOLS_DIR" | cut -f1) in $TOOLS_DIR"

printf 'cassandra %s (%s)\n' "$VERSION" "$SOURCE" >"$MARKER"
echo "cassandra: installed $VERSION from $SOURCE"
