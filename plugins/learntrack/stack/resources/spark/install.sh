#!/usr/bin/env bash
# Fetch the Delta Lake jars for Spark into TOOLS_DIR with Maven (no Ivy download at run time).
set -euo pipefail
target=${1:?usage: install.sh TOOLS_DIR}
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$target/.complete" ] && cmp -s "$here/pom.xml" "$target/.complete"; then
  echo "spark-jars: already installed"; exit 0
fi
echo "spark-jars: fetching Delta jars with Maven into $target"
rm -rf "$target"; mkdir -p "$target"
mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DincludeGroupIds=io.delta -DoutputDirectory="$target" || { echo "spark-jars: mvn failed" >&2; exit 1; }
cp "$here/pom.xml" "$target/.complete"
echo "spark-jars: $(ls "$target"/*.jar | wc -l) jars"
