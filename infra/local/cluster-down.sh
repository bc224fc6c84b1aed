#!/usr/bin/env bash
# Usage: cluster-down.sh STATE_DIR [--purge | --kill-node N]
# Stops the RabbitMQ cluster that cluster-up.sh started under STATE_DIR. Safe to run twice. Keeps
# the data unless --purge is given, which deletes STATE_DIR. --kill-node N kills node N only
# (SIGKILL, as a crash) and leaves the rest of the cluster running.
set -euo pipefail

case "$#:${2:-}:${3:-}" in
  1:: | 2:--purge:) ;;
  3:--kill-node:[1-9]) ;;
  *) echo "usage: $0 STATE_DIR [--purge | --kill-node N]" >&2; exit 2 ;;
esac
[ -d "$1" ] || exit 0
state="$(cd "$1" && pwd)"
# shellcheck source-path=SCRIPTDIR source=rabbit-node.sh
. "$(dirname "${BASH_SOURCE[0]}")/rabbit-node.sh"

if [ "${2:-}" = --kill-node ]; then
  [ -f "$state/node$3/node.env" ] || { echo "cluster-down.sh: no node $3 under $state" >&2; exit 1; }
  rabbit_node_stop "$state/node$3" --kill
  exit 0
fi

# With --purge the data is about to be deleted: kill instead of the ~7 s graceful shutdown.
kill="${2:+--kill}"
for dir in "$state"/node*/; do
  rabbit_node_stop "${dir%/}" "$kill" &
done
wait
# One epmd serves the whole cluster.
rabbit_epmd_stop "$state/node1"

if [ "${2:-}" = --purge ]; then
  rm -rf "$state"
fi
