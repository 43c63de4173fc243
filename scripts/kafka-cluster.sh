#!/usr/bin/env bash
# A three-node Apache Kafka cluster on 127.0.0.1 for `telex run --bootstrap ...`, the one the
# test suite runs (provisioned from Maven Central on first use; needs Java 17 and Maven).
# Prints the bootstrap lists; Ctrl-C stops it. Options: --nodes N, --dir PATH (keep data).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory setup > /dev/null
./scripts/kafka-provision.sh
exec .venv/bin/python -m tests.kafka_cluster "$@"
