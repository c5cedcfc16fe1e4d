#!/usr/bin/env bash
# Fetch the JVM side of the lake with Maven (no Ivy download at run time) into TOOLS_DIR:
#   TOOLS_DIR/*.jar       Delta Lake for Spark (pom.xml), on every session's class path
#   TOOLS_DIR/s3a/*.jar   Hadoop's S3A connector (pom-s3a.xml), added for s3a:// lakes only
#   TOOLS_DIR/abfs/*.jar  Hadoop's ABFS connector (pom-abfs.xml), added for abfss:// lakes only
set -euo pipefail
target=${1:?usage: install.sh TOOLS_DIR}
mkdir -p "$target"; target=$(cd "$target" && pwd)  # absolute: Maven resolves paths from the pom's folder
here=$(cd "$(dirname "$0")" && pwd)
stamp=$(cat "$here"/pom*.xml)
if [ -f "$target/.complete" ] && [ "$(cat "$target/.complete")" = "$stamp" ] && ls "$target"/*.jar >/dev/null 2>&1; then
  echo "spark-jars: already installed"; exit 0
fi
rm -rf "$target"; mkdir -p "$target"
fetch() {  # fetch POM OUTPUT_DIR [extra mvn args]: the pom's runtime dependencies, Spark's own excluded
  local pom=$1 out=$2; shift 2
  echo "spark-jars: fetching $(basename "$pom") with Maven into $out"
  mvn -B -q -f "$here/$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$out" "$@" \
    || { echo "spark-jars: mvn failed for $pom" >&2; exit 1; }
}
fetch pom.xml "$target" -DincludeGroupIds=io.delta
fetch pom-s3a.xml "$target/s3a"
fetch pom-abfs.xml "$target/abfs"
printf '%s' "$stamp" > "$target/.complete"
echo "spark-jars: $(ls "$target"/*.jar | wc -l) Delta jars, $(ls "$target"/s3a/*.jar | wc -l) s3a, $(ls "$target"/abfs/*.jar | wc -l) abfs"
