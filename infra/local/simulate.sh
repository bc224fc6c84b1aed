#!/usr/bin/env bash
# The main job on a machine without Docker: starts a private RabbitMQ and PostgreSQL from local
# binaries (installing them when missing), runs `engram-pipeline simulate` against them, and stops
# them again. Arguments go to simulate, e.g. --devices 3 --mutations 5000 --ingest 3.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="$(mktemp -d /tmp/engram-simulate-servers-XXXXXX)"
trap 'bash "$root/infra/local/down.sh" "$state" --purge >/dev/null 2>&1 || true' EXIT

echo "Starting a private RabbitMQ and PostgreSQL (state in $state)..."
bash "$root/infra/local/up.sh" "$state" >/dev/null
# shellcheck disable=SC1091
source "$state/env"
dotnet run --project "$root/services/Engram.Pipeline.Cli" -c Release -- simulate "$@"
