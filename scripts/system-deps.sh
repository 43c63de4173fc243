#!/usr/bin/env bash
# Installs the system tools the test suite drives for real, when they are missing:
#   chromium        the dashboard's end-to-end tests (Playwright drives Debian's Chromium)
#   prometheus      a real Prometheus scraping telex, and promtool for the alert rules
#   docker-compose  parses docker-compose.yml (no Docker engine needed to parse)
#   java, mvn       run Apache Kafka's broker for the cluster the suite starts, and fetch it
#                   from Maven Central (scripts/kafka-provision.sh, run last)
# Debian packages; the CI machines run as root. Tests never skip for want of these.
set -euo pipefail

declare -A wanted=([chromium]=chromium [prometheus]=prometheus [promtool]=prometheus [docker-compose]=docker-compose
  [java]=openjdk-17-jre-headless [mvn]=maven)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" > /dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
provision_kafka() { exec "$(dirname "$0")/kafka-provision.sh"; }
[ ${#missing[@]} -eq 0 ] && provision_kafka
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')

if [ "$(id -u)" -ne 0 ]; then
  echo "telex tests need these Debian packages: $packages" >&2
  echo "install them with: sudo apt-get install -y $packages" >&2
  exit 1
fi
echo "installing system packages for the tests: $packages"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $packages > /tmp/telex-apt.log 2>&1 || {
  apt-get update -q > /tmp/telex-apt.log 2>&1
  apt-get install -y -q --no-install-recommends $packages >> /tmp/telex-apt.log 2>&1 || {
    tail -20 /tmp/telex-apt.log >&2
    exit 1
  }
}
provision_kafka
