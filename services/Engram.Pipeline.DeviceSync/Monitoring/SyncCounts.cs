using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// Where a device stands on one target, read in one query: health, metrics and the operator's <c>status</c> all read
/// it, so they never disagree.
/// </summary>
/// <param name="Unsent">Journal rows of the project Engram has not had sent yet.</param>
/// <param name="InFlight">Journal rows sent and not answered yet.</param>
/// <param name="Acked">This device's rows the cloud gave a seq.</param>
/// <param name="Rejected">This device's rows the cloud rejected.</param>
/// <param name="Pulled">Other devices' rows taken in (applied, superseded by an own later edit, skipped, deferred or dead).</param>
/// <param name="Deferred">Pulled rows waiting in <c>sync_apply_deferred</c> for their parent.</param>
/// <param name="Dead">Pulled rows that can never apply, kept in <c>sync_apply_deferred</c> for an operator.</param>
/// <param name="Cursor">The unified cursor.</param>
/// <param name="Head">The last head of the target's log the device heard of.</param>
/// <param name="Refusal">
/// The cloud's refusal of this device's batches while it stands (<c>not-authorised</c>, <c>invalid-batch</c>, a batch of
/// one still too large): the device cannot fix it by itself. Null once the cloud accepts a batch again.
/// </param>
public sealed record SyncCounts(long Unsent, long InFlight, long Acked, long Rejected, long Pulled, long Deferred, long Dead, long Cursor, long Head,
    string? Refusal = null)
{
    /// <summary>Journal rows the cloud has not answered yet, sent or not.</summary>
    public long Pending => Unsent + InFlight;

    public long Lag => Math.Max(0, Head - Cursor);

    /// <summary>Synchronous on purpose: observable instruments call back synchronously, and SQLite is in-process.</summary>
    public static SyncCounts Read(EngramDatabase database, SyncTarget target)
    {
        using var connection = database.Open();
        return Read(connection, target);
    }

    public static SyncCounts Read(SqliteConnection connection, SyncTarget target)
    {
        using var select = connection.CreateCommand();
        // Every count walks an index, never the journal's rows: health and metrics read this often, and a journal of
        // a million rows must not make them slow. Pending rows are found through upstream's transport index.
        select.CommandText = """
            SELECT
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY idx_sync_mutations_transport
                 WHERE target_key = 'cloud' AND disposition = 'pending' AND acked_at IS NULL AND project = $project),
                (SELECT COUNT(*) FROM sync_mutations INDEXED BY idx_sync_mutations_transport
                 WHERE target_key = 'cloud' AND disposition = 'pending' AND acked_at IS NULL AND project = $project
                   AND seq <= COALESCE((SELECT sent_through FROM pipeline_targets WHERE target_key = $target), 0)),
                (SELECT COUNT(*) FROM sync_seq_mapping WHERE target_key = $target),
                (SELECT COUNT(*) FROM pipeline_rejections WHERE target_key = $target),
                (SELECT COUNT(*) FROM pipeline_applied WHERE target_key = $target),
                (SELECT COUNT(*) FROM sync_apply_deferred WHERE target_key = 'cloud' AND project = $project AND apply_status = 'deferred'),
                (SELECT COUNT(*) FROM sync_apply_deferred WHERE target_key = 'cloud' AND project = $project AND apply_status = 'dead'),
                COALESCE((SELECT unified_cursor FROM sync_state WHERE target_key = $target), 0),
                COALESCE((SELECT cloud_head FROM pipeline_targets WHERE target_key = $target), 0),
                (SELECT reason_message FROM sync_state WHERE target_key = $target AND lifecycle = 'degraded')
            """;
        select.Parameters.AddWithValue("$target", target.Key);
        select.Parameters.AddWithValue("$project", target.Project);
        using var reader = select.ExecuteReader();
        reader.Read();
        var (pending, inFlight) = (reader.GetInt64(0), reader.GetInt64(1));
        return new SyncCounts(pending - inFlight, inFlight, reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5),
            reader.GetInt64(6), reader.GetInt64(7), reader.GetInt64(8), reader.IsDBNull(9) ? null : reader.GetString(9));
    }

    /// <summary>
    /// Deferred rows of the target whose parent is here now: the device still has them to replay. Rows whose parent
    /// has not come (perhaps never will) are not counted; once this is zero the device has done all it can.
    /// </summary>
    public static long Replayable(SqliteConnection connection, SyncTarget target)
    {
        using var count = connection.CreateCommand();
        count.CommandText = $"SELECT COUNT(*) FROM sync_apply_deferred d WHERE {Apply.Deferral.Ready}";
        count.Parameters.AddWithValue("$project", target.Project);
        return (long)count.ExecuteScalar()!;
    }
}
