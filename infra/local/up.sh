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
# Same check as down.sh: a live process of the node's session.
rabbit_running() { ps -o stat=,args= -s "$1" 2>/dev/null | grep -qE '^[^Z].*rabbit'; }
if [ -f "$state/rabbitmq/session.pid" ] && rabbit_running "$(cat "$state/rabbitmq/session.pid")"; then
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
RMQ_BIN=/usr/lib/rabbitmq/bin

# PostgreSQL refuses to run as root: run it as the postgres OS user when we are root.
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); else as_pg=(); fi
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

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

# --- RabbitMQ: everything the node and its CLI tools need, in one file that down.sh reuses.
mkdir -p "$rmq/home" "$rmq/mnesia" "$rmq/log"
chmod 700 "$rmq"
if [ ! -f "$rmq/node.env" ]; then
  # A private cookie (HOME is where Erlang looks for it) shared by the node and rabbitmqctl.
  random_hex 20 >"$rmq/home/.erlang.cookie"
  chmod 400 "$rmq/home/.erlang.cookie"
  echo '[rabbitmq_management].' >"$rmq/enabled_plugins"
  cat >"$rmq/rabbitmq.conf" <<EOF
management.tcp.ip = 127.0.0.1
management.tcp.port = $mgmt_port
default_user = engram
default_pass = $rabbit_password
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
# No guest account exists (default_user replaces it); were one made, it could only connect locally.
loopback_users.guest = true
EOF
  if [ -n "${ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS:-}" ]; then
    echo "consumer_timeout = $ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS" >>"$rmq/rabbitmq.conf"
    echo '[{rabbit, [{channel_tick_interval, 1000}]}].' >"$rmq/advanced.config"
  fi
  cat >"$rmq/node.env" <<EOF
export HOME='$rmq/home'
export RABBITMQ_NODENAME='$node'
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$amqp_port RABBITMQ_DIST_PORT=$dist_port
export ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$epmd_port
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
export RABBITMQ_CONF_ENV_FILE='$rmq/no-env-file'
export RABBITMQ_CONFIG_FILE='$rmq/rabbitmq.conf' RABBITMQ_ADVANCED_CONFIG_FILE='$rmq/advanced.config'
export RABBITMQ_ENABLED_PLUGINS_FILE='$rmq/enabled_plugins'
export RABBITMQ_MNESIA_BASE='$rmq/mnesia' RABBITMQ_LOG_BASE='$rmq/log'
export RABBITMQ_PID_FILE='$rmq/rabbitmq.pid'
EOF
fi
with_rabbit_env() { (. "$rmq/node.env" && exec "$@"); }

if [ -z "${rabbit_up:-}" ]; then
  # A private epmd on its own port; relaxed so that down.sh can always stop it.
  with_rabbit_env epmd -names >/dev/null 2>&1 \
    || with_rabbit_env epmd -daemon -relaxed_command_check </dev/null >/dev/null 2>&1
  # Start the node in the background (stdio detached so callers capturing our output do not hang)
  # and set up PostgreSQL while it boots.
  rm -f "$rmq/rabbitmq.pid"
  # Its working directory is $rmq so that crash dumps (erl_crash.dump, MnesiaCore.*) land there.
  # rabbitmq-server stays as the VM's parent; setsid makes it the leader of a session holding the
  # whole node, which down.sh can stop even if we fail before the node writes its pid file.
  (cd "$rmq" && . ./node.env && exec setsid "$RMQ_BIN/rabbitmq-server") </dev/null >>"$rmq/log/console.log" 2>&1 &
  echo $! >"$rmq/session.pid"
  disown
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
if ! with_rabbit_env timeout 90 "$RMQ_BIN/rabbitmqctl" -q wait "$rmq/rabbitmq.pid" >/dev/null; then
  echo "up.sh: RabbitMQ node $node did not start; see $rmq/log" >&2
  tail -n 30 "$rmq/log/console.log" >&2
  exit 1
fi
for port in "$amqp_port" "$mgmt_port"; do
  timeout 30 bash -c "until (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.2; done"
done

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
