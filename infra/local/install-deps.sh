#!/usr/bin/env bash
# Installs the RabbitMQ and PostgreSQL 15 binaries that up.sh runs as private servers, and what the
# deployment tests use: docker-compose, a Docker engine, debootstrap (infra/containers) and Chromium
# with its driver. Then starts, in the background, the engine and the base images the container
# tests use, so that they are made while the solution builds.
# Idempotent: installs only what is missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
PG_CTL=/usr/lib/postgresql/15/bin/pg_ctl

packages=()
[ -x "$RABBITMQ_SERVER" ] || packages+=(rabbitmq-server)
[ -x "$PG_CTL" ] || packages+=(postgresql-15)
# The deployment tests: compose and an engine for it, debootstrap for the local base images, and a
# browser for the management UI.
command -v docker-compose >/dev/null || packages+=(docker-compose)
command -v dockerd >/dev/null || packages+=(docker.io)
command -v debootstrap >/dev/null || packages+=(debootstrap)
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)

# As root, or through sudo.
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
can_be_root() { [ "${#as_root[@]}" -eq 0 ] || command -v sudo >/dev/null; }

if [ "${#packages[@]}" -gt 0 ]; then
  can_be_root || { echo "install-deps.sh: not root and sudo is not available to install ${packages[*]}" >&2; exit 1; }
  echo "install-deps.sh: installing ${packages[*]}"
  "${as_root[@]}" apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"

  # The package's postinst may start the default node (rabbit@<host>) on 5672/25672.
  # Stop only that service; private nodes started by up.sh are not managed by it.
  if [[ " ${packages[*]} " == *" rabbitmq-server "* ]]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
      "${as_root[@]}" systemctl disable --now rabbitmq-server || true
    elif [ -x /etc/init.d/rabbitmq-server ]; then
      "${as_root[@]}" /etc/init.d/rabbitmq-server stop || true
    fi
    # Its epmd (port 4369) stays behind; this refuses to stop it while any node is registered.
    env -u ERL_EPMD_PORT epmd -kill >/dev/null 2>&1 || true
  fi
fi

# The engine and the base images, which infra/containers builds locally where no image registry
# answers (about 3 minutes on a new machine, mostly downloads). The tests take the same lock before
# they use the engine, so they wait for this, and do it themselves if it failed (its output goes to
# the log below).
if can_be_root; then
  lock="${TMPDIR:-/tmp}/engram-pipeline-docker.lock"
  log="${TMPDIR:-/tmp}/engram-pipeline-containers.log"
  "${as_root[@]}" setsid bash -c "flock -o '$lock' bash '$root/infra/containers/engine.sh' start &&
    flock -o '$lock' bash '$root/infra/containers/local-images.sh'" >"$log" 2>&1 </dev/null &
fi
