using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Apply;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>
/// Marks one of this device's journal rows as placed by the cloud, whether the answer to its push says so or a pull
/// brings it back: <c>acked_at</c> as upstream writes it (its disposition stays <c>pending</c>, as upstream's does),
/// and, for a delete, the target's tombstone floor, so that the other devices' upserts placed after it apply.
/// A row Engram has removed since (a superseded session upsert) keeps only its mapping.
/// </summary>
internal static class Acknowledge
{
    public static SqliteCommand Command(SqliteTransaction transaction) => transaction.Command("""
        UPDATE sync_mutations SET acked_at = datetime('now')
        WHERE target_key = 'cloud' AND seq = $local AND acked_at IS NULL AND disposition = 'pending'
        RETURNING entity, op, entity_key
        """);

    public static void Row(SqliteCommand acknowledge, EngramApplier applier, SyncTarget target, SeqMapping mapping)
    {
        string? entity = null, entityKey = null;
        using (var reader = acknowledge.Bind(("$local", mapping.LocalSeq)).ExecuteReader())
        {
            if (reader.Read() && reader.GetString(1) == "delete")
            {
                (entity, entityKey) = (reader.GetString(0), reader.GetString(2));
            }
        }
        if (entity is not null)
        {
            applier.RecordOwnDeletePlaced(target.Project, entity, entityKey!, mapping.CloudSeq);
        }
    }
}
