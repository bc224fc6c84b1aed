-- What the device adds to Engram's database: upstream PR #339's sync_seq_mapping, the column
-- sync_state.unified_cursor (added by code, on the per-project rows 'cloud:<project>'), and tables
-- prefixed pipeline_. Created idempotently; never drops, rewrites or re-types anything of upstream's.
-- A target is an Engram project; its local key is upstream's 'cloud:<project>'.

-- Where the cloud put each journal row of this device, per target. Declared as PR #339 declares it
-- (columns, order, defaults), so that its inserts, which name neither synced_at nor always target_key,
-- work on a database the device made. An existing table keeps its shape. The index differs on purpose:
-- PR #339's idx_sync_seq_mapping_cloud on the same columns is not unique; the device's is (a cloud seq
-- belongs to one local seq), under its own name so that a database where PR #339's index came first
-- still gets it.
CREATE TABLE IF NOT EXISTS sync_seq_mapping (
    local_seq  INTEGER NOT NULL,
    cloud_seq  INTEGER NOT NULL,
    target_key TEXT    NOT NULL DEFAULT 'local',
    synced_at  TEXT    NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (target_key, local_seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS sync_seq_mapping_cloud ON sync_seq_mapping (target_key, cloud_seq);

-- The device id: made with the device's first start on this database, kept with it.
CREATE TABLE IF NOT EXISTS pipeline_device (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    device_id  TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

-- Per target, what only the pipeline knows: the cloud's head as last heard, the last local seq sent
-- (rows up to it and unanswered are in flight), and the last whole-batch refusal.
CREATE TABLE IF NOT EXISTS pipeline_targets (
    target_key      TEXT    PRIMARY KEY,
    cloud_head      INTEGER NOT NULL DEFAULT 0,
    sent_through    INTEGER NOT NULL DEFAULT 0,
    last_refusal    TEXT,
    last_refusal_at TEXT
);

-- The cloud's rejections of this device's rows, kept even when Engram later removes the row; with
-- sync_seq_mapping, every local seq the cloud has answered. The journal row itself is quarantined.
CREATE TABLE IF NOT EXISTS pipeline_rejections (
    target_key  TEXT    NOT NULL,
    local_seq   INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    rejected_at TEXT    NOT NULL,
    PRIMARY KEY (target_key, local_seq)
);

-- Every other device's mutation this device has taken in, once, by cloud seq, and what became of it:
-- applied; superseded (this device's own later edit wins); skipped (upstream's tombstone gate);
-- deferred (its parent is missing: it waits in upstream's sync_apply_deferred); dead (it can never
-- apply). Pulled mutations never enter sync_mutations, where upstream would push them again.
CREATE TABLE IF NOT EXISTS pipeline_applied (
    target_key       TEXT    NOT NULL,
    cloud_seq        INTEGER NOT NULL,
    origin_device    TEXT    NOT NULL,
    origin_local_seq INTEGER NOT NULL,
    entity           TEXT    NOT NULL,
    entity_key       TEXT    NOT NULL,
    op               TEXT    NOT NULL,
    outcome          TEXT    NOT NULL,
    applied_at       TEXT    NOT NULL,
    PRIMARY KEY (target_key, cloud_seq)
);
CREATE INDEX IF NOT EXISTS pipeline_applied_entity ON pipeline_applied (target_key, entity, entity_key, cloud_seq);
