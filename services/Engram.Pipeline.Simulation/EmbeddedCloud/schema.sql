-- The embedded cloud log: the same tables as PostgreSQL, in one SQLite file.
CREATE TABLE IF NOT EXISTS cloud_targets (
    target_key TEXT    PRIMARY KEY,
    head       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cloud_devices (
    target_key     TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    last_local_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target_key, device_id)
);
CREATE TABLE IF NOT EXISTS cloud_mutations (
    target_key  TEXT    NOT NULL,
    cloud_seq   INTEGER NOT NULL,
    device_id   TEXT    NOT NULL,
    local_seq   INTEGER NOT NULL,
    entity      TEXT    NOT NULL,
    op          TEXT    NOT NULL,
    entity_key  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    occurred_at TEXT    NOT NULL,
    accepted_at TEXT    NOT NULL,
    PRIMARY KEY (target_key, cloud_seq),
    UNIQUE (target_key, device_id, local_seq)
);
CREATE TABLE IF NOT EXISTS cloud_rejections (
    target_key  TEXT    NOT NULL,
    device_id   TEXT    NOT NULL,
    local_seq   INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    rejected_at TEXT    NOT NULL,
    PRIMARY KEY (target_key, device_id, local_seq)
);
CREATE TABLE IF NOT EXISTS cloud_device_grants (
    target_key  TEXT    NOT NULL,
    device_id   TEXT    NOT NULL,
    granted_at  TEXT    NOT NULL,
    PRIMARY KEY (target_key, device_id)
);
