#!/usr/bin/env bash
# Usage: up.sh STATE_DIR
# Starts a private RabbitMQ node (with management) and a private PostgreSQL 15 cluster on
# free loopback ports, all state under STATE_DIR, and writes STATE_DIR/env (shell exports).
# Running it again on STATE_DIR starts whichever of the two is stopped (down.sh can stop one),
# with the same settings and data.
# ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS, when set as the node is first created, sets the broker's
# delivery acknowledgement timeout (default 30 min), checked every second instead of every minute.
# shellcheck disable=SC2154  # ports, node name and passwords come from the sourced $state/settings
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/install-deps.sh"

mkdir -p "$1"
state="$(cd "$1" && pwd)"
# shellcheck source-path=SCRIPTDIR source=rabbit-node.sh
. "$here/rabbit-node.sh"
if rabbit_node_running "$state/rabbitmq"; then
  rabbit_up=1
fi
# On failure, stop whatever was started; the state (logs) is kept for diagnosis.
stop_on_failure() {
  local status=$?
  [ "$status" -eq 0 ] || "$here/down.sh" "$state" >&2 || true
}
trap stop_on_failure EXIT
rmq="$state/rabbitmq"
pg="$state/postgres"
PG_BIN=/usr/lib/postgresql/15/bin

# PostgreSQL refuses to run as root: run it as the postgres OS user when we are root.
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); else as_pg=(); fi

# Settings are chosen once per STATE_DIR; a restart reuses them.
if [ ! -f "$state/settings" ]; then
  read -r amqp_port mgmt_port dist_port epmd_port pg_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  cat >"$state/settings" <<EOF
amqp_port=$amqp_port mgmt_port=$mgmt_port dist_port=$dist_port epmd_port=$epmd_port pg_port=$pg_port
node=engram-$(random_hex 4)@localhost
rabbit_password=$(random_hex 16) pg_password=$(random_hex 16) pg_admin_password=$(random_hex 16)
EOF
  chmod 600 "$state/settings"
fi
# shellcheck source=/dev/null
. "$state/settings"

# --- RabbitMQ: started in the background (unless it runs); PostgreSQL is set up while it boots.
rabbit_node_configure "$rmq" "$node" "$amqp_port" "$mgmt_port" "$dist_port" "$epmd_port" \
  engram "$rabbit_password" "$rmq/home"
if [ -z "${rabbit_up:-}" ]; then
  rabbit_node_start "$rmq"
fi

# --- PostgreSQL
if [ ! -f "$pg/data/PG_VERSION" ]; then
  mkdir -p "$pg/data"
  echo "$pg_admin_password" >"$pg/pwfile"
  if [ "$(id -u)" -eq 0 ]; then
    chmod o+x "$state" && chown -R postgres: "$pg"
    "${as_pg[@]}" test -w "$pg/data" || { echo "up.sh: user postgres cannot reach $pg (check parent dirs)" >&2; exit 1; }
  fi
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$pg/data" -U postgres -A scram-sha-256 --pwfile="$pg/pwfile" \
    -E UTF8 --locale=C >"$pg/initdb.log" || { cat "$pg/initdb.log" >&2; exit 1; }
  rm -f "$pg/pwfile"
  cat >>"$pg/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  created_pg=1
fi
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg/data" status >/dev/null \
  || "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t 60 start >/dev/null \
  || { tail -n 30 "$pg/postgres.log" >&2; exit 1; }
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 30
if [ "${created_pg:-}" = 1 ]; then
  PGPASSWORD="$pg_admin_password" "$PG_BIN/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -c "CREATE ROLE engram LOGIN PASSWORD '$pg_password'" -c "CREATE DATABASE engram OWNER engram"
fi

# --- Wait for RabbitMQ: app started, then both listeners accept connections.
rabbit_node_wait "$rmq" 90 "$amqp_port" "$mgmt_port"

cat >"$state/env" <<EOF
export RabbitMq__Uri='amqp://engram:$rabbit_password@127.0.0.1:$amqp_port/'
export ConnectionStrings__CloudDb='Host=127.0.0.1;Port=$pg_port;Username=engram;Password=$pg_password;Database=engram'
export ENGRAM_RABBITMQ_MANAGEMENT='http://127.0.0.1:$mgmt_port/'
export ENGRAM_RABBITMQ_USER='engram'
export ENGRAM_RABBITMQ_PASSWORD='$rabbit_password'
export ENGRAM_RABBITMQ_NODE='$node'
export ENGRAM_PG_ADMIN='Host=127.0.0.1;Port=$pg_port;Username=postgres;Password=$pg_admin_password;Database=postgres'
EOF
chmod 600 "$state/env"
cat "$state/env"
