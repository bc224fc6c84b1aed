#!/usr/bin/env bash
# Usage: system-down.sh STATE_DIR [--purge]
# Stops what system-up.sh started: the service processes, then RabbitMQ and PostgreSQL.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 STATE_DIR [--purge]" >&2; exit 2; }
[ -d "$1" ] || exit 0
state="$(cd "$1" && pwd)"
for pid_file in "$state"/logs/*.pid; do
  [ -f "$pid_file" ] || continue
  pid="$(cat "$pid_file")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  rm -f "$pid_file"
done
bash "$(dirname "$0")/down.sh" "$state" "${@:2}"
