using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Entities;

/// <summary>
/// Folds mutations into the <c>entities</c> table, inside the caller's transaction. One rule for
/// every source, so that devices folding the same log in the same order hold the same rows:
/// an upsert sets the payload; a soft delete sets the delete's payload and <c>deleted = 1</c>; a hard
/// delete (payload <c>"hard_delete": true</c>) removes the row. <c>cloud_seq</c> is the seq of the
/// mutation that set the row, NULL while it is this device's own edit the cloud has not placed yet.
/// </summary>
internal sealed class EntityWriter(SqliteTransaction transaction) : IDisposable
{
    private readonly SqliteCommand _upsert = transaction.Command("""
        INSERT INTO entities (target_key, entity, entity_key, payload, deleted, cloud_seq, local_seq, updated_at)
        VALUES ($target, $entity, $key, $payload, $deleted, $cloud, $local, $at)
        ON CONFLICT (target_key, entity, entity_key) DO UPDATE SET
            payload = excluded.payload, deleted = excluded.deleted, cloud_seq = excluded.cloud_seq,
            local_seq = excluded.local_seq, updated_at = excluded.updated_at
        """);

    private readonly SqliteCommand _remove = transaction.Command(
        "DELETE FROM entities WHERE target_key = $target AND entity = $entity AND entity_key = $key");

    /// <summary>Applies one mutation. <paramref name="cloudSeq"/> is null for an own edit not yet placed.</summary>
    public void Apply(string target, string entity, string key, string op, string payload, long? cloudSeq, long? localSeq, string at)
    {
        if (op == "delete" && DeviceJournal.IsHardDelete(payload))
        {
            _remove.Bind(("$target", target), ("$entity", entity), ("$key", key)).ExecuteNonQuery();
            return;
        }
        _upsert.Bind(("$target", target), ("$entity", entity), ("$key", key), ("$payload", payload), ("$deleted", op == "delete" ? 1 : 0),
            ("$cloud", cloudSeq), ("$local", localSeq), ("$at", at)).ExecuteNonQuery();
    }

    /// <summary>
    /// Rebuilds one entity from the journal: the mutations the cloud placed, in cloud order, then this
    /// device's own edits the cloud has not placed yet, in local order. Used when the cloud rejects an
    /// own edit that had already been applied locally.
    /// </summary>
    public void Refold(string target, string entity, string key, string at)
    {
        _remove.Bind(("$target", target), ("$entity", entity), ("$key", key)).ExecuteNonQuery();
        using var history = transaction.Command("""
            SELECT op, payload, cloud_seq, local_seq FROM (
                SELECT m.op, m.payload, s.cloud_seq, m.seq AS local_seq, 0 AS pending, s.cloud_seq AS position
                FROM sync_mutations m
                JOIN sync_seq_mapping s ON s.target_key = m.target_key AND s.local_seq = m.seq
                WHERE m.target_key = $target AND m.entity = $entity AND m.entity_key = $key AND m.source = 'local'
                UNION ALL
                SELECT op, payload, cloud_seq, NULL, 0, cloud_seq
                FROM sync_mutations
                WHERE target_key = $target AND entity = $entity AND entity_key = $key AND source = 'remote'
                UNION ALL
                SELECT m.op, m.payload, NULL, m.seq, 1, m.seq
                FROM sync_mutations m
                WHERE m.target_key = $target AND m.entity = $entity AND m.entity_key = $key AND m.source = 'local'
                  AND m.rejected_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM sync_seq_mapping s WHERE s.target_key = m.target_key AND s.local_seq = m.seq))
            ORDER BY pending, position
            """, ("$target", target), ("$entity", entity), ("$key", key));
        var steps = new List<(string Op, string Payload, long? Cloud, long? Local)>();
        using (var reader = history.ExecuteReader())
        {
            while (reader.Read())
            {
                steps.Add((reader.GetString(0), reader.GetString(1),
                    reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.IsDBNull(3) ? null : reader.GetInt64(3)));
            }
        }
        foreach (var (op, payload, cloud, local) in steps)
        {
            // Only an edit still waiting for the cloud keeps its local seq: the cursor service looks it up by that.
            Apply(target, entity, key, op, payload, cloud, cloud is null ? local : null, at);
        }
    }

    public void Dispose()
    {
        _upsert.Dispose();
        _remove.Dispose();
    }
}
