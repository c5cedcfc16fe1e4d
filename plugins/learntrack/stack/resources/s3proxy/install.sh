#!/usr/bin/env bash
# Fetch s3proxy (an S3 API over a local folder) with Maven into TOOLS_DIR/s3proxy.jar.
set -euo pipefail
target=${1:?usage: install.sh TOOLS_DIR}
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$target/.complete" ] && cmp -s "$here/pom.xml" "$target/.complete"; then
  echo "s3proxy: already installed"; exit 0
fi
echo "s3proxy: fetching the s3proxy jar with Maven into $target"
rm -rf "$target"; mkdir -p "$target/dl"
mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$target/dl" \
  || { echo "s3proxy: mvn failed" >&2; exit 1; }
mv "$target"/dl/s3proxy-*-jar-with-dependencies.jar "$target/s3proxy.jar"
rm -rf "$target/dl"
cp "$here/pom.xml" "$target/.complete"
echo "s3proxy: $(du -h "$target/s3proxy.jar" | cut -f1) jar installed"
