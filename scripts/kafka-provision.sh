#!/usr/bin/env bash
# Provisions Apache Kafka's broker for the test suite's cluster: the jars named by
# scripts/kafka/pom.xml, copied from Maven Central into .cache/kafka/<version>/lib (ignored by
# git). A complete cache (its stamp holds the pom's checksum) makes this a no-op that touches
# no network, so only the first run downloads.
#   scripts/kafka-provision.sh          provision when missing, print nothing when done
#   scripts/kafka-provision.sh --print  print the lib folder (provisioning first if needed)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pom="$root/scripts/kafka/pom.xml"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
lib="$root/.cache/kafka/$version/lib"
stamp="$lib/.complete"
want=$(sha256sum "$pom" | cut -d' ' -f1)

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  for cmd in java mvn; do
    command -v "$cmd" > /dev/null 2>&1 || {
      echo "Kafka for the tests needs $cmd: scripts/system-deps.sh installs it (as root)" >&2
      exit 1
    }
  done
  echo "provisioning Apache Kafka $version into ${lib#"$root"/} (Maven Central, first run only)"
  mkdir -p "$(dirname "$lib")"
  rm -rf "$lib.partial"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$lib.partial" \
    > "$root/.cache/kafka/mvn.log" 2>&1 || {
    tail -30 "$root/.cache/kafka/mvn.log" >&2
    exit 1
  }
  rm -rf "$lib"
  mv "$lib.partial" "$lib"
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--print" ]; then
  echo "$lib"
fi
