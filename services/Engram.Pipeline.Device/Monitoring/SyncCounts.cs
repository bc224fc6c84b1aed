using Engram.Pipeline.Device.Storage;

namespace Engram.Pipeline.Device.Monitoring;

/// <summary>Where the device stands, read in one query for gauges and health.</summary>
public sealed record SyncCounts(long Pending, long Acked, long Rejected, long Pulled, long Cursor, long Head)
{
    public long Lag => Math.Max(0, Head - Cursor);

    /// <summary>Synchronous on purpose: observable instruments call back synchronously, and SQLite is in-process.</summary>
    public static SyncCounts Read(DeviceDatabase database, DeviceIdentity identity)
    {
        using var connection = database.Open();
        using var select = connection.CreateCommand();
        // Every count walks a partial index, never the journal's rows: health and metrics read this
        // often, and a journal of a million rows must not make them slow. Acked = local - pending - rejected.
        select.CommandText = """
            SELECT
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_pending
                 WHERE target_key = $t AND source = 'local' AND acked_at IS NULL AND rejected_at IS NULL),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_local WHERE target_key = $t AND source = 'local'),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_rejected
                 WHERE target_key = $t AND source = 'local' AND rejected_at IS NOT NULL),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_remote WHERE target_key = $t AND source = 'remote'),
                COALESCE((SELECT unified_cursor FROM sync_state WHERE target_key = $t), 0),
                COALESCE((SELECT cloud_head FROM sync_state WHERE target_key = $t), 0)
            """;
        select.Parameters.AddWithValue("$t", identity.Target);
        using var reader = select.ExecuteReader();
        reader.Read();
        var (pending, local, rejected) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        return new SyncCounts(pending, local - pending - rejected, rejected, reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5));
    }
}
