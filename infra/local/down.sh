#!/usr/bin/env bash
# Usage: down.sh STATE_DIR [--purge | rabbitmq | postgres]
# Stops the RabbitMQ node and PostgreSQL cluster that up.sh started under STATE_DIR, or only the
# one named (up.sh starts it again). Safe to run twice. Keeps the data unless --purge is given,
# which deletes STATE_DIR.
set -euo pipefail

case "$#:${2:-}" in
  1: | 2:--purge | 2:rabbitmq | 2:postgres) ;;
  *) echo "usage: $0 STATE_DIR [--purge | rabbitmq | postgres]" >&2; exit 2 ;;
esac
[ -d "$1" ] || exit 0
state="$(cd "$1" && pwd)"
purge="" only=""
case "${2:-}" in --purge) purge=1 ;; ?*) only="$2" ;; esac
rmq="$state/rabbitmq"
pg="$state/postgres"
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); else as_pg=(); fi
# shellcheck source-path=SCRIPTDIR source=rabbit-node.sh
. "$(dirname "${BASH_SOURCE[0]}")/rabbit-node.sh"

if [ "$only" != postgres ]; then
  # With --purge the data is about to be deleted: skip the ~7 s graceful shutdown.
  rabbit_node_stop "$rmq" "${purge:+--kill}"
  rabbit_epmd_stop "$rmq"
fi

pg_ctl=(/usr/lib/postgresql/15/bin/pg_ctl -D "$pg/data")
if [ -f "$pg/data/PG_VERSION" ] && [ "$only" != rabbitmq ] && "${as_pg[@]}" "${pg_ctl[@]}" status >/dev/null; then
  "${as_pg[@]}" "${pg_ctl[@]}" -m "$([ "$purge" ] && echo immediate || echo fast)" -w stop >/dev/null
fi

if [ "$purge" ]; then
  rm -rf "$state"
fi
