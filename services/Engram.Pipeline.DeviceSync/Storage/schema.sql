-- Names follow upstream Engram. Created idempotently; never drops or rewrites data.
CREATE TABLE IF NOT EXISTS sync_device (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    device_id  TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

-- The journal: one row per change, local or pulled from the cloud. For a pulled ('remote') row,
-- cloud_seq and origin_device say where it came from and acked_at is when it was applied here.
CREATE TABLE IF NOT EXISTS sync_mutations (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    target_key    TEXT NOT NULL,
    entity        TEXT NOT NULL,
    entity_key    TEXT NOT NULL,
    op            TEXT NOT NULL,
    payload       TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'remote')),
    project       TEXT,
    occurred_at   TEXT NOT NULL,
    acked_at      TEXT,
    rejected_at   TEXT,
    reject_reason TEXT,
    reject_detail TEXT,
    cloud_seq     INTEGER,
    origin_device TEXT
);
-- A pulled mutation is applied once: its cloud seq can be journaled only once.
CREATE UNIQUE INDEX IF NOT EXISTS sync_mutations_remote
    ON sync_mutations (target_key, cloud_seq) WHERE source = 'remote';
-- An entity's whole history (refolding it after a rejection reads every row of it).
CREATE INDEX IF NOT EXISTS sync_mutations_entity
    ON sync_mutations (target_key, entity, entity_key);
-- Rule 7 asks, for every pulled row, whether this device has its own edit of the entity the cloud has
-- not placed before it: only local rows, so that an entity every device edits does not make each pulled
-- row walk all its remote history (that grew with the log: a new device's catch-up slowed to 500 rows/s).
CREATE INDEX IF NOT EXISTS sync_mutations_entity_local
    ON sync_mutations (target_key, entity, entity_key) WHERE source = 'local';
-- What the publisher reads: local rows the cloud has not answered yet, in seq order. Queries name it
-- (INDEXED BY): SQLite's planner, without statistics, otherwise takes sync_mutations_local, which
-- walks every answered row too.
CREATE INDEX IF NOT EXISTS sync_mutations_pending
    ON sync_mutations (target_key, seq)
    WHERE source = 'local' AND acked_at IS NULL AND rejected_at IS NULL;
CREATE INDEX IF NOT EXISTS sync_mutations_local
    ON sync_mutations (target_key, seq) WHERE source = 'local';
-- Health counts the rejected rows without reading the journal.
CREATE INDEX IF NOT EXISTS sync_mutations_rejected
    ON sync_mutations (target_key, seq) WHERE source = 'local' AND rejected_at IS NOT NULL;

-- sent_through: the last local seq the publisher has sent (status counts unanswered rows up to it as
-- in flight); one row per batch, where a mark on every journal row would rewrite each row once more.
CREATE TABLE IF NOT EXISTS sync_state (
    target_key     TEXT    PRIMARY KEY,
    unified_cursor INTEGER NOT NULL DEFAULT 0,
    cloud_head     INTEGER NOT NULL DEFAULT 0,
    sent_through   INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    updated_at     TEXT
);

CREATE TABLE IF NOT EXISTS sync_seq_mapping (
    target_key TEXT    NOT NULL,
    local_seq  INTEGER NOT NULL,
    cloud_seq  INTEGER NOT NULL,
    synced_at  TEXT    NOT NULL,
    PRIMARY KEY (target_key, local_seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS sync_seq_mapping_cloud ON sync_seq_mapping (target_key, cloud_seq);

-- The materialised state. local_seq: the journal row of this device's own edit that set the row.
CREATE TABLE IF NOT EXISTS entities (
    target_key TEXT    NOT NULL,
    entity     TEXT    NOT NULL,
    entity_key TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    cloud_seq  INTEGER,
    local_seq  INTEGER,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (target_key, entity, entity_key)
);
CREATE INDEX IF NOT EXISTS entities_local_seq ON entities (target_key, local_seq) WHERE local_seq IS NOT NULL;
