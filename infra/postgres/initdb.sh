#!/usr/bin/env bash
# The postgres image runs this once, when it initialises an empty data volume: the cloud tables,
# owned by POSTGRES_USER, then the ingest's restricted role (roles.sql) with its password.
# For a database that already exists, run the same three steps by hand (see roles.sql).
set -euo pipefail
run() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"; }
run -f /engram/schema.sql
run -f /engram/roles.sql
run -v password="$INGEST_DB_PASSWORD" <<'SQL'
ALTER ROLE engram_ingest PASSWORD :'password';
SQL
