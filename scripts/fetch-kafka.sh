#!/usr/bin/env bash
# Fetches (once) the Apache Kafka 4.1.1 broker jars that tests and benchmarks run with
# `java -cp 'lib/*' kafka.Kafka`: no tarball, no Docker, just Maven Central via mvn.
# Prints the lib dir on stdout; everything else goes to stderr.
#
#   LIFECYCLE_CACHE_DIR  cache root (default ~/.cache/lifecycle); jars land in
#                        $LIFECYCLE_CACHE_DIR/kafka-4.1.1/lib
#
# Idempotent: a marker written after a complete download (holding the pom's checksum)
# makes later runs return at once; an edited pom or an interrupted run fetches again.
# The download goes to a temporary sibling dir that is renamed into place, so a
# concurrent or aborted run never leaves a half-filled lib dir behind.
set -euo pipefail

KAFKA_VERSION=4.1.1
here="$(cd "$(dirname "$0")" && pwd)"
pom="$here/kafka-pom.xml"
home_dir="${LIFECYCLE_CACHE_DIR:-$HOME/.cache/lifecycle}/kafka-$KAFKA_VERSION"
lib="$home_dir/lib"
marker="$lib/.fetched"

want="$(sha256sum "$pom" | cut -d' ' -f1)"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
  echo "$lib"
  exit 0
fi

for tool in mvn java; do
  if ! command -v "$tool" >/dev/null; then
    echo "fetch-kafka: '$tool' not found; run scripts/install-system-deps.sh (JDK 17+ and Maven)" >&2
    exit 1
  fi
done

mkdir -p "$home_dir"
work="$(mktemp -d "$home_dir/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Run Maven in a scratch copy of the pom so nothing (target/, etc.) lands in the repo.
cp "$pom" "$work/pom.xml"
echo "fetch-kafka: downloading Apache Kafka $KAFKA_VERSION jars into $lib ..." >&2
(cd "$work" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$work/lib" >&2)

if ! compgen -G "$work/lib/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
  echo "fetch-kafka: Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing in $work/lib" >&2
  exit 1
fi
echo "$want" >"$work/lib/.fetched"
rm -rf "$lib.old"
[ -d "$lib" ] && mv "$lib" "$lib.old"
mv "$work/lib" "$lib"
rm -rf "$lib.old"
echo "fetch-kafka: $(find "$lib" -name '*.jar' | wc -l) jars ready" >&2
echo "$lib"
