namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>
/// Upstream's delete tombstones, with its per-target floors: the pipeline's cloud seqs are per project, so each
/// project is a target <c>cloud:&lt;project&gt;</c> of its own and the gate reads that target's floor. A pulled delete
/// also raises <c>last_remote_mutation_seq</c>, as upstream's own pull does: upstream's backfill takes an active
/// tombstone without it for a local delete still to send, and Engram would journal the pulled delete as its own.
/// </summary>
internal sealed class Tombstones(Statements sql)
{
    /// <summary>
    /// Upstream's gate for a target other than its own cloud: with a tombstone, this target's floor decides; a floor
    /// of another target only lets the upsert through; with no floor at all, an active tombstone blocks.
    /// </summary>
    public bool BlocksUpsert(string targetKey, string entity, string entityKey, long cloudSeq) =>
        sql.Scalar("""
            SELECT CASE
                WHEN own.last_mutation_seq IS NOT NULL THEN $seq <= own.last_mutation_seq
                WHEN EXISTS (SELECT 1 FROM sync_delete_tombstone_remote_floors other
                             WHERE other.entity = tombstone.entity AND other.entity_key = tombstone.entity_key) THEN 0
                ELSE tombstone.active = 1
            END
            FROM sync_delete_tombstones tombstone
            LEFT JOIN sync_delete_tombstone_remote_floors own
                ON own.target_key = $target AND own.entity = tombstone.entity AND own.entity_key = tombstone.entity_key
            WHERE tombstone.entity = $entity AND tombstone.entity_key = $key
            """, ("$target", targetKey), ("$entity", entity), ("$key", entityKey), ("$seq", cloudSeq)) is long blocked && blocked != 0;

    /// <summary>Upstream's <c>recordCloudDeleteTombstoneTx</c>: the tombstone (re)activated, then the target's floor raised.</summary>
    public void RecordPulledDelete(
        string targetKey, string entity, string entityKey, string? sessionId, string? project, string deletedAt, bool hardDelete, long cloudSeq)
    {
        sql.Execute("""
            INSERT INTO sync_delete_tombstones (entity, entity_key, session_id, project, deleted_at, hard_delete, active)
            VALUES ($entity, $key, $session_id, $project, $deleted_at, $hard_delete, 1)
            ON CONFLICT (entity, entity_key) DO UPDATE SET
                session_id = excluded.session_id, project = excluded.project, deleted_at = excluded.deleted_at,
                hard_delete = excluded.hard_delete, active = 1;
            UPDATE sync_delete_tombstones SET last_remote_mutation_seq = MAX(COALESCE(last_remote_mutation_seq, 0), $seq)
            WHERE entity = $entity AND entity_key = $key;
            """,
            ("$entity", entity), ("$key", entityKey), ("$session_id", EngramRules.NullIfEmpty(sessionId)),
            ("$project", EngramRules.NormalizeProject(project)), ("$deleted_at", deletedAt), ("$hard_delete", hardDelete), ("$seq", cloudSeq));
        RaiseFloor(targetKey, entity, entityKey, cloudSeq);
    }

    /// <summary>
    /// Another device's hard delete that this device's own later edit of the observation wins over (rule 7): the
    /// observation stays, so the tombstone is recorded inactive (as upstream leaves one after a local upsert of the key),
    /// with the target's floor raised. A relation placed before the delete and applied here later (it waited for an
    /// end) is then orphaned as on every device that applied the delete.
    /// </summary>
    public void RecordSupersededHardDelete(string targetKey, string entityKey, string? sessionId, string? project, string deletedAt, long cloudSeq)
    {
        sql.Execute("""
            INSERT INTO sync_delete_tombstones (entity, entity_key, session_id, project, deleted_at, hard_delete, active, last_remote_mutation_seq)
            VALUES ('observation', $key, $session_id, $project, $deleted_at, 1, 0, $seq)
            ON CONFLICT (entity, entity_key) DO UPDATE SET hard_delete = 1
            """,
            ("$key", entityKey), ("$session_id", EngramRules.NullIfEmpty(sessionId)), ("$project", EngramRules.NormalizeProject(project)),
            ("$deleted_at", deletedAt), ("$seq", cloudSeq));
        RaiseFloor(targetKey, EngramRules.Observation, entityKey, cloudSeq);
    }

    public void RaiseFloor(string targetKey, string entity, string entityKey, long cloudSeq) =>
        sql.Execute("""
            INSERT INTO sync_delete_tombstone_remote_floors (target_key, entity, entity_key, last_mutation_seq)
            VALUES ($target, $entity, $key, $seq)
            ON CONFLICT (target_key, entity, entity_key) DO UPDATE SET
                last_mutation_seq = MAX(last_mutation_seq, excluded.last_mutation_seq)
            """, ("$target", targetKey), ("$entity", entity), ("$key", entityKey), ("$seq", cloudSeq));

    /// <summary>An applied upsert deactivates the tombstone; the floors stay, so older upserts remain blocked.</summary>
    public void ClearForUpsert(string entity, string entityKey) =>
        sql.Execute("UPDATE sync_delete_tombstones SET active = 0 WHERE entity = $entity AND entity_key = $key",
            ("$entity", entity), ("$key", entityKey));
}
