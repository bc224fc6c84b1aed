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
# Is anything of the node's session (up.sh started it with setsid) still alive? Zombies count
# as gone; checking the command line guards against a stale pid file.
rabbit_running() { ps -o stat=,args= -s "$1" 2>/dev/null | grep -qE '^[^Z].*rabbit'; }

if [ -f "$rmq/node.env" ] && [ "$only" != postgres ]; then
  with_rabbit_env() { (. "$rmq/node.env" && exec "$@"); }
  session="$(cat "$rmq/session.pid" 2>/dev/null || true)"
  # With --purge the data is about to be deleted: skip the ~7 s graceful shutdown and kill the
  # session below (if there is one to kill).
  if [ -f "$rmq/rabbitmq.pid" ] && { [ -z "$purge" ] || [ -z "$session" ]; }; then
    # Returns once the VM has exited; fails at once if it is not running.
    with_rabbit_env timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -q stop "$rmq/rabbitmq.pid" >/dev/null 2>&1 || true
  fi
  # Whatever is left (up.sh failed before the node wrote its pid file, or the graceful stop
  # failed) gets killed: a booting node ignores SIGTERM.
  if [ -n "$session" ] && rabbit_running "$session"; then
    kill -KILL -- "-$session" 2>/dev/null || true
    for _ in $(seq 100); do rabbit_running "$session" || break; sleep 0.1; done
  fi
  # The node's private epmd (its own port) outlives the node: stop it too.
  with_rabbit_env epmd -kill >/dev/null 2>&1 || true
fi

pg_ctl=(/usr/lib/postgresql/15/bin/pg_ctl -D "$pg/data")
if [ -f "$pg/data/PG_VERSION" ] && [ "$only" != rabbitmq ] && "${as_pg[@]}" "${pg_ctl[@]}" status >/dev/null; then
  "${as_pg[@]}" "${pg_ctl[@]}" -m "$([ "$purge" ] && echo immediate || echo fast)" -w stop >/dev/null
fi

if [ "$purge" ]; then
  rm -rf "$state"
fi
