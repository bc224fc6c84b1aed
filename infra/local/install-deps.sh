#!/usr/bin/env bash
# Installs the RabbitMQ and PostgreSQL 15 binaries that up.sh runs as private servers, and what the
# deployment tests use: docker-compose (only its parser) and Chromium with its driver.
# Idempotent: does nothing when everything is already present.
set -euo pipefail

RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
PG_CTL=/usr/lib/postgresql/15/bin/pg_ctl

packages=()
[ -x "$RABBITMQ_SERVER" ] || packages+=(rabbitmq-server)
[ -x "$PG_CTL" ] || packages+=(postgresql-15)
# The deployment tests: a real compose parser, and a browser for the management UI.
command -v docker-compose >/dev/null || packages+=(docker-compose)
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
[ "${#packages[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "install-deps.sh: not root and sudo is not available to install ${packages[*]}" >&2
  exit 1
fi

echo "install-deps.sh: installing ${packages[*]}"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"

# The package's postinst may start the default node (rabbit@<host>) on 5672/25672.
# Stop only that service; private nodes started by up.sh are not managed by it.
if [[ " ${packages[*]} " == *" rabbitmq-server "* ]]; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable --now rabbitmq-server || true
  elif [ -x /etc/init.d/rabbitmq-server ]; then
    "${sudo[@]}" /etc/init.d/rabbitmq-server stop || true
  fi
  # Its epmd (port 4369) stays behind; this refuses to stop it while any node is registered.
  env -u ERL_EPMD_PORT epmd -kill >/dev/null 2>&1 || true
fi
