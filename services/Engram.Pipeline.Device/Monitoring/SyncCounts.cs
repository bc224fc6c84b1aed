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
        select.CommandText = """
            SELECT
                (SELECT COUNT(*) FROM sync_mutations
                 WHERE target_key = $t AND source = 'local' AND acked_at IS NULL AND rejected_at IS NULL),
                (SELECT COUNT(acked_at) FROM sync_mutations WHERE target_key = $t AND source = 'local'),
                (SELECT COUNT(rejected_at) FROM sync_mutations WHERE target_key = $t AND source = 'local'),
                (SELECT COUNT(*) FROM sync_mutations WHERE target_key = $t AND source = 'remote'),
                COALESCE((SELECT unified_cursor FROM sync_state WHERE target_key = $t), 0),
                COALESCE((SELECT cloud_head FROM sync_state WHERE target_key = $t), 0)
            """;
        select.Parameters.AddWithValue("$t", identity.Target);
        using var reader = select.ExecuteReader();
        reader.Read();
        return new SyncCounts(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5));
    }
}
