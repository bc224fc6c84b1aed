using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// Where a device stands on one target, read in one query: health, metrics and the operator's
/// <c>status</c> all read it, so they never disagree.
/// </summary>
/// <param name="Unsent">Journal rows not sent yet.</param>
/// <param name="InFlight">Journal rows sent and not answered yet.</param>
/// <param name="Acked">This device's rows the cloud gave a seq.</param>
/// <param name="Rejected">This device's rows the cloud rejected.</param>
/// <param name="Pulled">Other devices' rows applied here.</param>
/// <param name="Cursor">The unified cursor.</param>
/// <param name="Head">The last head of the target's log the device heard of.</param>
public sealed record SyncCounts(long Unsent, long InFlight, long Acked, long Rejected, long Pulled, long Cursor, long Head)
{
    /// <summary>Journal rows the cloud has not answered yet, sent or not.</summary>
    public long Pending => Unsent + InFlight;

    public long Lag => Math.Max(0, Head - Cursor);

    /// <summary>Synchronous on purpose: observable instruments call back synchronously, and SQLite is in-process.</summary>
    public static SyncCounts Read(DeviceDatabase database, string target)
    {
        using var connection = database.Open();
        return Read(connection, target);
    }

    public static SyncCounts Read(SqliteConnection connection, string target)
    {
        using var select = connection.CreateCommand();
        // Every count walks a partial index, never the journal's rows: health and metrics read this
        // often, and a journal of a million rows must not make them slow. Acked = local - pending - rejected.
        select.CommandText = """
            SELECT
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_pending
                 WHERE target_key = $t AND source = 'local' AND acked_at IS NULL AND rejected_at IS NULL),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_pending
                 WHERE target_key = $t AND source = 'local' AND acked_at IS NULL AND rejected_at IS NULL
                   AND seq <= COALESCE((SELECT sent_through FROM sync_state WHERE target_key = $t), 0)),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_local WHERE target_key = $t AND source = 'local'),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_rejected
                 WHERE target_key = $t AND source = 'local' AND rejected_at IS NOT NULL),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_remote WHERE target_key = $t AND source = 'remote'),
                COALESCE((SELECT unified_cursor FROM sync_state WHERE target_key = $t), 0),
                COALESCE((SELECT cloud_head FROM sync_state WHERE target_key = $t), 0)
            """;
        select.Parameters.AddWithValue("$t", target);
        using var reader = select.ExecuteReader();
        reader.Read();
        var (pending, inFlight, local, rejected) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3));
        return new SyncCounts(pending - inFlight, inFlight, local - pending - rejected, rejected, reader.GetInt64(4), reader.GetInt64(5),
            reader.GetInt64(6));
    }
}
