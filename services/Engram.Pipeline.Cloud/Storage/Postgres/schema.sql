-- Created idempotently at start-up; never drops or rewrites data.
CREATE TABLE IF NOT EXISTS cloud_targets (
    target_key  text   PRIMARY KEY,
    head        bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS cloud_devices (
    target_key      text   NOT NULL REFERENCES cloud_targets (target_key),
    device_id       text   NOT NULL,
    last_local_seq  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (target_key, device_id)
);

CREATE TABLE IF NOT EXISTS cloud_mutations (
    target_key   text        NOT NULL,
    cloud_seq    bigint      NOT NULL,
    device_id    text        NOT NULL,
    local_seq    bigint      NOT NULL,
    entity       text        NOT NULL,
    op           text        NOT NULL,
    entity_key   text        NOT NULL,
    -- lz4, not the default pglz: payloads of up to 256 KiB are compressed as they are stored, and pglz was a quarter
    -- of PostgreSQL's CPU in the ingest's profile. A table made before keeps pglz until its owner runs
    -- ALTER TABLE cloud_mutations ALTER COLUMN payload SET COMPRESSION lz4 (new rows only; nothing is rewritten).
    payload      jsonb       COMPRESSION lz4 NOT NULL,
    occurred_at  timestamptz NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_key, cloud_seq),
    UNIQUE (target_key, device_id, local_seq)
);

-- Rejected mutations move a device's high-water mark too; a resend gets the same answer.
CREATE TABLE IF NOT EXISTS cloud_rejections (
    target_key   text        NOT NULL,
    device_id    text        NOT NULL,
    local_seq    bigint      NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_key, device_id, local_seq)
);

-- Which targets a device may push to and pull from when devices are authorised (Ingest:AuthoriseDevices);
-- written by the operator (engram-pipeline device-user add), only read by the ingest.
CREATE TABLE IF NOT EXISTS cloud_device_grants (
    target_key  text        NOT NULL,
    device_id   text        NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_key, device_id)
);
