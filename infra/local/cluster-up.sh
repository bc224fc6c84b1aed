#!/usr/bin/env bash
# Usage: cluster-up.sh STATE_DIR [NODES]
# Starts a private RabbitMQ cluster of NODES nodes (default 3, each with management) on free
# loopback ports from the local binaries, all state under STATE_DIR, and writes STATE_DIR/env:
# what a service needs to use the cluster (RabbitMq__Uri on node 1, RabbitMq__ClusterNodes the
# others, RabbitMq__QueueType=quorum) and each node's name and ports. Running it again on a stopped
# STATE_DIR restarts the same cluster. cluster-down.sh STATE_DIR stops it (or kills one node).
# shellcheck disable=SC2154  # ports, names and the password come from the sourced $state/settings
set -euo pipefail

case "$#:${2:-3}" in
  [12]:[1-9]) ;;
  *) echo "usage: $0 STATE_DIR [NODES (1-9)]" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/install-deps.sh"

mkdir -p "$1"
state="$(cd "$1" && pwd)"
# shellcheck source-path=SCRIPTDIR source=rabbit-node.sh
. "$here/rabbit-node.sh"

# Settings are chosen once per STATE_DIR; a restart reuses them (a node's name and ports are part
# of the cluster's membership).
if [ ! -f "$state/settings" ]; then
  nodes="${2:-3}"
  read -r epmd_port ports < <(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(1 + 3 * int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
print(ports[0], ",".join(map(str, ports[1:])))' "$nodes")
  IFS=, read -r -a p <<<"$ports"
  cat >"$state/settings" <<EOF
nodes=$nodes epmd_port=$epmd_port
amqp_ports='${p[*]:0:nodes}' mgmt_ports='${p[*]:nodes:nodes}' dist_ports='${p[*]:2*nodes:nodes}'
name=engram-$(random_hex 4) rabbit_password=$(random_hex 16)
EOF
  chmod 600 "$state/settings"
fi
# shellcheck source=/dev/null
. "$state/settings"
read -r -a amqp <<<"$amqp_ports"
read -r -a mgmt <<<"$mgmt_ports"
read -r -a dist <<<"$dist_ports"
node_name() { echo "$name-$1@localhost"; }
node_dir() { echo "$state/node$1"; }

for i in $(seq 1 "$nodes"); do
  if rabbit_node_running "$(node_dir "$i")"; then
    echo "cluster-up.sh: node $i under $state is already running; run cluster-down.sh first" >&2
    exit 1
  fi
done
# On failure, stop whatever was started; the state (logs) is kept for diagnosis.
stop_on_failure() {
  local status=$?
  [ "$status" -eq 0 ] || "$here/cluster-down.sh" "$state" >&2 || true
}
trap stop_on_failure EXIT

# All nodes boot at once: one shared cookie (HOME) and one epmd, each its own ports and data.
for i in $(seq 1 "$nodes"); do
  rabbit_node_configure "$(node_dir "$i")" "$(node_name "$i")" "${amqp[i-1]}" "${mgmt[i-1]}" "${dist[i-1]}" \
    "$epmd_port" engram "$rabbit_password" "$state/home"
  rabbit_node_start "$(node_dir "$i")"
done
for i in $(seq 1 "$nodes"); do
  rabbit_node_wait "$(node_dir "$i")" 120 "${amqp[i-1]}" "${mgmt[i-1]}"
done

# The others join node 1 once; a restarted node remembers its cluster. Stopping and starting the
# app are slow and independent per node, so they run side by side; the joins go one at a time.
if [ ! -f "$state/clustered" ]; then
  ctl() { rabbit_with_env "$(node_dir "$1")" timeout 120 "$RMQ_BIN/rabbitmqctl" -q "${@:2}" >/dev/null; }
  each_joining() { # runs a ctl command on nodes 2..n in parallel
    local i pids=()
    for i in $(seq 2 "$nodes"); do ctl "$i" "$@" & pids+=($!); done
    for i in "${pids[@]}"; do wait "$i"; done
  }
  each_joining stop_app
  for i in $(seq 2 "$nodes"); do ctl "$i" join_cluster "$(node_name 1)"; done
  each_joining start_app
  touch "$state/clustered"
fi

others=()
for i in $(seq 2 "$nodes"); do others+=("127.0.0.1:${amqp[i-1]}"); done
all_names=()
for i in $(seq 1 "$nodes"); do all_names+=("$(node_name "$i")"); done
cat >"$state/env" <<EOF
export RabbitMq__Uri='amqp://engram:$rabbit_password@127.0.0.1:${amqp[0]}/'
export RabbitMq__ClusterNodes='$(IFS=,; echo "${others[*]}")'
export RabbitMq__QueueType='quorum'
export ENGRAM_RABBITMQ_MANAGEMENT='http://127.0.0.1:${mgmt[0]}/'
export ENGRAM_RABBITMQ_USER='engram'
export ENGRAM_RABBITMQ_PASSWORD='$rabbit_password'
export ENGRAM_RABBITMQ_NODES='${all_names[*]}'
export ENGRAM_RABBITMQ_AMQP_PORTS='${amqp[*]}'
export ENGRAM_RABBITMQ_MANAGEMENT_PORTS='${mgmt[*]}'
EOF
chmod 600 "$state/env"
cat "$state/env"
