# Sourced by up.sh, down.sh, cluster-up.sh and cluster-down.sh; not run on its own.
# One private RabbitMQ node from the local binaries, with all its state in one directory (DIR):
# node.env holds everything the node and its CLI tools need, so every step below reuses it.
# shellcheck shell=bash

RMQ_BIN=/usr/lib/rabbitmq/bin

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# rabbit_node_configure DIR NODE AMQP_PORT MGMT_PORT DIST_PORT EPMD_PORT USER PASSWORD COOKIE_HOME
# Writes the node's files once; a restart reuses them. Nodes that share COOKIE_HOME (where Erlang
# looks for .erlang.cookie) and EPMD_PORT can form a cluster. ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS, when
# set, sets the delivery acknowledgement timeout (default 30 min), checked every second.
rabbit_node_configure() {
  local dir="$1" node="$2" amqp_port="$3" mgmt_port="$4" dist_port="$5" epmd_port="$6" user="$7" password="$8" home="$9"
  mkdir -p "$dir/mnesia" "$dir/log" "$home"
  chmod 700 "$dir"
  [ -f "$dir/node.env" ] && return 0
  if [ ! -f "$home/.erlang.cookie" ]; then
    random_hex 20 >"$home/.erlang.cookie"
    chmod 400 "$home/.erlang.cookie"
  fi
  echo '[rabbitmq_management].' >"$dir/enabled_plugins"
  cat >"$dir/rabbitmq.conf" <<EOF
management.tcp.ip = 127.0.0.1
management.tcp.port = $mgmt_port
default_user = $user
default_pass = $password
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
# No guest account exists (default_user replaces it); were one made, it could only connect locally.
loopback_users.guest = true
EOF
  if [ -n "${ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS:-}" ]; then
    echo "consumer_timeout = $ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS" >>"$dir/rabbitmq.conf"
    echo '[{rabbit, [{channel_tick_interval, 1000}]}].' >"$dir/advanced.config"
  fi
  cat >"$dir/node.env" <<EOF
export HOME='$home'
export RABBITMQ_NODENAME='$node'
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$amqp_port RABBITMQ_DIST_PORT=$dist_port
export ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$epmd_port
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
export RABBITMQ_CONF_ENV_FILE='$dir/no-env-file'
export RABBITMQ_CONFIG_FILE='$dir/rabbitmq.conf' RABBITMQ_ADVANCED_CONFIG_FILE='$dir/advanced.config'
export RABBITMQ_ENABLED_PLUGINS_FILE='$dir/enabled_plugins'
export RABBITMQ_MNESIA_BASE='$dir/mnesia' RABBITMQ_LOG_BASE='$dir/log'
export RABBITMQ_PID_FILE='$dir/rabbitmq.pid'
EOF
}

# rabbit_with_env DIR COMMAND...: runs a command (rabbitmqctl, epmd) with the node's environment.
# shellcheck source=/dev/null
rabbit_with_env() { (. "$1/node.env" && exec "${@:2}"); }

# Is anything of the node's session still alive? Zombies count as gone; checking the command line
# guards against a stale pid file. (pgrep cannot select by session and show zombies apart.)
# shellcheck disable=SC2009
rabbit_session_running() { ps -o stat=,args= -s "$1" 2>/dev/null | grep -qE '^[^Z].*rabbit'; }

rabbit_node_running() {
  [ -f "$1/session.pid" ] && rabbit_session_running "$(cat "$1/session.pid")"
}

# rabbit_node_start DIR: starts the node in the background and returns at once (rabbit_node_wait
# waits for it), so that callers can do other work, or start more nodes, while it boots.
rabbit_node_start() {
  local dir="$1"
  # The epmd of the node's ERL_EPMD_PORT (shared by a cluster's nodes); relaxed so that
  # rabbit_epmd_stop can always stop it.
  rabbit_with_env "$dir" epmd -names >/dev/null 2>&1 \
    || rabbit_with_env "$dir" epmd -daemon -relaxed_command_check </dev/null >/dev/null 2>&1
  rm -f "$dir/rabbitmq.pid"
  # Stdio detached so callers capturing our output do not hang; working directory $dir so that crash
  # dumps (erl_crash.dump, MnesiaCore.*) land there. rabbitmq-server stays as the VM's parent;
  # setsid makes it the leader of a session holding the whole node, which rabbit_node_stop can
  # stop even if the node never wrote its pid file.
  # shellcheck source=/dev/null
  (cd "$dir" && . ./node.env && exec setsid "$RMQ_BIN/rabbitmq-server") </dev/null >>"$dir/log/console.log" 2>&1 &
  echo $! >"$dir/session.pid"
  disown
}

# rabbit_node_wait DIR SECONDS PORT...: waits until the app has started and each PORT accepts
# connections; on failure says why on stderr and returns 1.
rabbit_node_wait() {
  local dir="$1" seconds="$2" port
  if ! rabbit_with_env "$dir" timeout "$seconds" "$RMQ_BIN/rabbitmqctl" -q wait "$dir/rabbitmq.pid" >/dev/null; then
    echo "RabbitMQ node in $dir did not start; see $dir/log" >&2
    tail -n 30 "$dir/log/console.log" >&2
    return 1
  fi
  for port in "${@:3}"; do
    timeout 30 bash -c "until (: </dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.2; done"
  done
}

# rabbit_node_stop DIR [--kill]: stops the node; --kill skips the ~7 s graceful shutdown (a crash,
# or data about to be deleted). Safe to run twice.
rabbit_node_stop() {
  local dir="$1" kill="${2:-}" session
  [ -f "$dir/node.env" ] || return 0
  session="$(cat "$dir/session.pid" 2>/dev/null || true)"
  if [ -f "$dir/rabbitmq.pid" ] && { [ -z "$kill" ] || [ -z "$session" ]; }; then
    # Returns once the VM has exited; fails at once if it is not running.
    rabbit_with_env "$dir" timeout 60 "$RMQ_BIN/rabbitmqctl" -q stop "$dir/rabbitmq.pid" >/dev/null 2>&1 || true
  fi
  # Whatever is left (the node never wrote its pid file, the graceful stop failed, or --kill) gets
  # killed: a booting node ignores SIGTERM.
  if [ -n "$session" ] && rabbit_session_running "$session"; then
    kill -KILL -- "-$session" 2>/dev/null || true
    for _ in $(seq 100); do rabbit_session_running "$session" || break; sleep 0.1; done
  fi
}

# rabbit_epmd_stop DIR: the node's epmd outlives the node; stop it once no node needs it.
rabbit_epmd_stop() {
  [ -f "$1/node.env" ] || return 0
  rabbit_with_env "$1" epmd -kill >/dev/null 2>&1 || true
}
