#!/usr/bin/env bash
# Usage: system-up.sh STATE_DIR [INGEST_PROCESSES]
# The docker-compose topology without Docker: a private RabbitMQ (management UI) and PostgreSQL
# from local binaries, INGEST_PROCESSES cloud ingest processes (default 2) and two devices
# (device-a, device-b on target "team"), each its own OS process with its own database file.
# Secured as in production: the ingest runs as the engram_ingest database role and authorises
# devices; each device connects as its own RabbitMQ user (engram-pipeline device-user add).
# Everything lives under STATE_DIR; system-down.sh STATE_DIR stops it all.
# shellcheck disable=SC2154  # ports and passwords come from the sourced $state/settings
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 STATE_DIR [INGEST_PROCESSES]" >&2; exit 2; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$1"
state="$(cd "$1" && pwd)"
ingest="${2:-2}"

mkdir -p "$state/logs"
# The servers keep running after up.sh returns: give them no handle on this script's output.
if ! bash "$root/infra/local/up.sh" "$state" >"$state/logs/up.log" 2>&1 </dev/null; then
  cat "$state/logs/up.log" >&2
  exit 1
fi
# shellcheck disable=SC1091
source "$state/env"
# shellcheck disable=SC1091
source "$state/settings"
dotnet build "$root/Engram.Pipeline.sln" -c Release -v quiet -nologo >/dev/null

# The cloud tables, made by their owner (engram), then the ingest's restricted role.
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
psql_as() { # user password sql-args...
  local user="$1" password="$2"; shift 2
  PGPASSWORD="$password" /usr/lib/postgresql/15/bin/psql -q -h 127.0.0.1 -p "$pg_port" -U "$user" -d engram -v ON_ERROR_STOP=1 "$@"
}
psql_as engram "$pg_password" -f "$root/services/Engram.Pipeline.Cloud/Storage/Postgres/schema.sql"
psql_as postgres "$pg_admin_password" -f "$root/infra/postgres/roles.sql"
ingest_password="$(random_hex 16)"
psql_as postgres "$pg_admin_password" -c "ALTER ROLE engram_ingest PASSWORD '$ingest_password'"
ingest_db="Host=127.0.0.1;Port=$pg_port;Username=engram_ingest;Password=$ingest_password;Database=engram"

# Each device's own RabbitMQ user, permissions, bindings and grant; a new password on every start.
cli="$root/services/Engram.Pipeline.Cli/bin/Release/net10.0/engram-pipeline.dll"
declare -A device_uri
for device in device-a device-b; do
  password="$(random_hex 16)"
  ENGRAM_DEVICE_PASSWORD="$password" RabbitMq__ManagementUri="$ENGRAM_RABBITMQ_MANAGEMENT" \
    dotnet "$cli" device-user add --device "$device" --target team >>"$state/logs/device-users.log"
  device_uri[$device]="amqp://$device:$password@127.0.0.1:$amqp_port/"
done

mkdir -p "$state/devices"
: >"$state/services"
# Each service listens for health and metrics on 8080, or on a free port when another process has 8080,
# and logs where once it has started; they start one after another so that each finds the port taken or not.
start() { # name project extra-env...
  local name="$1" project="$2" url; shift 2
  # setsid: each service leads its own process group, which system-down.sh signals.
  (cd "$root/services/$project/bin/Release/net10.0" &&
    exec env "$@" setsid dotnet "$project.dll") >"$state/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$state/logs/$name.pid"
  url=$(timeout 60 bash -c "until grep -m1 -o 'Health and metrics on http://[^ ,]*' '$state/logs/$name.log'; do sleep 0.3; done") || true
  url=${url##* on }
  url=${url/0.0.0.0/127.0.0.1}
  if [ -z "$url" ] || ! timeout 60 bash -c "until curl -sf '$url/health/ready' >/dev/null; do sleep 0.5; done"; then
    echo "system-up.sh: $name is not ready; see $state/logs/$name.log" >&2
    tail -n 20 "$state/logs/$name.log" >&2
    exit 1
  fi
  echo "$name $url" >>"$state/services"
}
for i in $(seq 1 "$ingest"); do
  start "cloud-ingest-$i" Engram.Pipeline.CloudIngest ConnectionStrings__CloudDb="$ingest_db"
done
for device in device-a device-b; do
  start "$device" Engram.Pipeline.Device RabbitMq__Uri="${device_uri[$device]}" \
    ConnectionStrings__DeviceDb="Data Source=$state/devices/$device.db" Device__Id="$device" Device__Target=team
done

echo "Engram.Pipeline is up. Services (health at /health/ready, metrics at /metrics):"
sed 's/^/  /' "$state/services"
echo "RabbitMQ management: $ENGRAM_RABBITMQ_MANAGEMENT (user $ENGRAM_RABBITMQ_USER, password in $state/env)"
echo "Device databases: $state/devices; status: dotnet run --project services/Engram.Pipeline.Cli -- status --db $state/devices/device-a.db --cloud \"\$ConnectionStrings__CloudDb\""
