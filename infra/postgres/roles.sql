-- engram_ingest: the PostgreSQL role the cloud ingest runs as. It reads and appends the cloud log and
-- nothing else: no DDL, no DELETE or TRUNCATE, no UPDATE but the two counters, no writing of
-- cloud_device_grants (the operator's), no other table.
--
-- Run it as a superuser (or the tables' owner, if it may create roles) on the cloud database, after
-- the tables' owner created the schema, then give the role a password:
--   psql "$OWNER" -f services/Engram.Pipeline.CloudIngest/Storage/Postgres/schema.sql
--   psql "$ADMIN" -f infra/postgres/roles.sql
--   psql "$ADMIN" -c '\password engram_ingest'
-- and run the ingest with ConnectionStrings__CloudDb=…;Username=engram_ingest;… It runs no DDL then:
-- it only checks that the tables exist. Idempotent; plain SQL, so any client can run it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'engram_ingest') THEN
        CREATE ROLE engram_ingest LOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO engram_ingest', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO engram_ingest;
GRANT SELECT, INSERT ON cloud_targets, cloud_devices, cloud_mutations, cloud_rejections TO engram_ingest;
-- The per-target counter and the per-device high-water mark; locking a row FOR UPDATE needs this too.
GRANT UPDATE (head) ON cloud_targets TO engram_ingest;
GRANT UPDATE (last_local_seq) ON cloud_devices TO engram_ingest;
GRANT SELECT ON cloud_device_grants TO engram_ingest;
