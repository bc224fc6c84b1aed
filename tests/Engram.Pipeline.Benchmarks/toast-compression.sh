#!/usr/bin/env bash
# The lz4 lever of issue 12, side by side: the same Engram-like jsonb payloads (words, 300 B to 40 KB, 16 MB in all)
# inserted into two tables whose payload column differs only in TOAST compression, pglz (PostgreSQL's default) and lz4
# (cloud_mutations' since), alternated three times on a private server; then each table's size and a full read.
# Usage: bash tests/Engram.Pipeline.Benchmarks/toast-compression.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state=$(mktemp -d /tmp/toast-XXXX)
trap 'bash "$root/infra/local/down.sh" "$state" --purge >/dev/null 2>&1 || true' EXIT
bash "$root/infra/local/up.sh" "$state" >/dev/null
# shellcheck source=/dev/null
. "$state/env"
pg() { PGPASSWORD=$(sed -n 's/.*Password=\([^;]*\);Database=postgres.*/\1/p' <<<"$ENGRAM_PG_ADMIN") psql -qAt -h 127.0.0.1 -p "$(sed -n 's/.*Port=\([0-9]*\);.*/\1/p' <<<"$ENGRAM_PG_ADMIN")" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
pg <<'SQL'
CREATE TABLE words AS SELECT w FROM unnest(string_to_array('the a of and to in is that for it as with was on be by this are or from at which an have not has but were they all there can been one their its more when will would who so no about if out up into them some what time only could other than then two these may like use any over such our first even most also after did many before must through back years where much your way well down should because each just those people how too little state good very make world still see own men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three', ' ')) AS w;
CREATE TABLE payloads AS
  WITH wa AS (SELECT array_agg(w) AS a, count(*)::int AS c FROM words)
  SELECT s.i, jsonb_build_object('sync_id', 'obs-' || s.i, 'title', 'note ' || s.i, 'type', 'discovery', 'content',
           (SELECT string_agg(wa.a[1 + floor(random() * wa.c)::int + 0 * g.k], ' ') FROM generate_series(1, s.n) AS g(k))) AS p
  FROM wa, (SELECT i, CASE WHEN i % 10 = 0 THEN 8000 WHEN i % 3 = 0 THEN 800 ELSE 60 END AS n FROM generate_series(1, 3000) i) s;
SQL
echo "payload bytes: $(pg -c "SELECT sum(length(p::text)) FROM payloads")"
for m in pglz lz4; do pg -c "CREATE TABLE t_$m (i int, p jsonb COMPRESSION $m)"; done
for round in 1 2 3; do
  for m in pglz lz4; do
    pg -c "TRUNCATE t_$m"
    ms=$(pg -c "\timing on" -c "INSERT INTO t_$m SELECT i, (p::text)::jsonb FROM payloads" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    echo "round $round $m insert ms: $ms"
  done
done
for m in pglz lz4; do echo "$m table size: $(pg -c "SELECT pg_size_pretty(pg_total_relation_size('t_$m'))")"; done
for m in pglz lz4; do
  ms=$(pg -c "\timing on" -c "SELECT sum(length(p::text)) FROM t_$m" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'); echo "$m read ms: $ms"
done
