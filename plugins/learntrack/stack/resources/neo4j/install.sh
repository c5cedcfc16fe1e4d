#!/usr/bin/env bash
# Install embedded Neo4j 5.26 (community) for LearnTrack local dev, via Maven only.
#
#   install.sh TOOLS_DIR
#
# Result (TOOLS_DIR should be dedicated to neo4j):
#   TOOLS_DIR/lib/*.jar         runtime classpath (org.neo4j:neo4j + deps, incl. Bolt)
#   TOOLS_DIR/Launcher.java     launcher source (also runnable in source-file mode)
#   TOOLS_DIR/classes/          Launcher compiled once with javac (saves ~5 s and
#                               ~40 MB RSS per start versus source-file mode)
#   TOOLS_DIR/jvm.options       JVM args, usable as a java @argfile
#   TOOLS_DIR/.neo4j-installed  marker, written last: "neo4j VERSION DIGEST"
#
# Idempotent: exits early when the marker matches this version and these files.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"

if [[ $# -ne 1 || -z "${1:-}" ]]; then
    echo "usage: $0 TOOLS_DIR" >&2
    exit 2
fi
TOOLS_DIR="$1"

VERSION="$(sed -n 's:.*<neo4j.version>\(.*\)</neo4j.version>.*:\1:p' "$POM" | head -n1)"
if [[ -z "$VERSION" ]]; then
    echo "neo4j: ERROR: cannot read <neo4j.version> from $POM" >&2
    exit 1
fi
# Marker content = version + digest of this directory's files, so editing pom.xml,
# Launcher.java, jvm.options or install.sh triggers a reinstall on the next run.
DIGEST="$(cat "$POM" "$HERE/Launcher.java" "$HERE/jvm.options" "$HERE/install.sh" | sha256sum | cut -c1-16)"
EXPECTED="neo4j $VERSION $DIGEST"
MARKER="$TOOLS_DIR/.neo4j-installed"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$EXPECTED" ]]; then
    echo "neo4j: already installed"
    exit 0
fi

for tool in mvn java javac; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "neo4j: ERROR: '$tool' not found on PATH" >&2
        exit 1
    fi
done

mkdir -p "$TOOLS_DIR"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd)"
MARKER="$TOOLS_DIR/.neo4j-installed"
rm -f "$MARKER"

STAGING="$TOOLS_DIR/lib.partial"
MVN_LOG="$TOOLS_DIR/install-mvn.log"
rm -rf "$STAGING"

echo "neo4j: resolving org.neo4j:neo4j:$VERSION with Maven (first run downloads ~125 MB)..."
start=$SECONDS
if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$STAGING" >"$MVN_LOG" 2>&1; then
    echo "neo4j: ERROR: Maven dependency resolution failed; last lines of $MVN_LOG:" >&2
    tail -n 30 "$MVN_LOG" >&2 || true
    rm -rf "$STAGING"
    exit 1
fi
count="$(find "$STAGING" -maxdepth 1 -name '*.jar' | wc -l)"
if [[ ! -f "$STAGING/neo4j-$VERSION.jar" || ! -f "$STAGING/neo4j-bolt-$VERSION.jar" ]]; then
    echo "neo4j: ERROR: Maven finished but neo4j/neo4j-bolt $VERSION jars are missing in $STAGING" >&2
    exit 1
fi
rm -rf "$TOOLS_DIR/lib"
mv "$STAGING" "$TOOLS_DIR/lib"
echo "neo4j: $count jars in $TOOLS_DIR/lib ($((SECONDS - start))s)"

cp "$HERE/Launcher.java" "$HERE/jvm.options" "$TOOLS_DIR/"
rm -rf "$TOOLS_DIR/classes"
JAVAC_LOG="$TOOLS_DIR/install-javac.log"
if ! javac --release 17 -XDignore.symbol.file -nowarn -cp "$TOOLS_DIR/lib/*" \
        -d "$TOOLS_DIR/classes" "$TOOLS_DIR/Launcher.java" >"$JAVAC_LOG" 2>&1; then
    echo "neo4j: ERROR: javac failed to compile Launcher.java:" >&2
    cat "$JAVAC_LOG" >&2 || true
    exit 1
fi
echo "neo4j: launcher compiled to $TOOLS_DIR/classes; jvm.options copied"

printf '%s\n' "$EXPECTED" >"$MARKER"
echo "neo4j: installed $VERSION into $TOOLS_DIR"
