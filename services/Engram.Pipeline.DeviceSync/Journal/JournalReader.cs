using System.Globalization;
using System.Text;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Journal;

/// <summary>
/// Reads the journal rows the cloud has not answered yet, whoever wrote them (this process or the
/// Engram application in another one), in seq order and within the batch limits.
/// </summary>
public sealed class JournalReader(DeviceDatabase database, DeviceIdentity identity)
{
    /// <summary>
    /// The next batch after <paramref name="afterSeq"/>, or from the first unanswered row when it is
    /// null; null when nothing is pending.
    /// </summary>
    public async Task<PendingBatch?> ReadBatchAsync(long? afterSeq, int maxMutations, int maxBytes, CancellationToken ct)
    {
        await using var connection = await database.OpenAsync(ct);
        await using var select = connection.CreateCommand();
        select.CommandText = """
            SELECT seq, entity, op, entity_key, payload, occurred_at
            FROM sync_mutations INDEXED BY sync_mutations_pending
            WHERE target_key = $target AND source = 'local' AND acked_at IS NULL AND rejected_at IS NULL AND seq > $after
            ORDER BY seq
            LIMIT $limit
            """;
        select.Parameters.AddWithValue("$target", identity.Target);
        select.Parameters.AddWithValue("$after", afterSeq ?? 0);
        select.Parameters.AddWithValue("$limit", maxMutations);

        var mutations = new List<Mutation>();
        long bytes = 0;
        await using (var reader = await select.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var payload = reader.GetString(4);
                bytes += Encoding.UTF8.GetByteCount(payload);
                // The first row always goes, even alone over the limit: the cloud then rejects just that row.
                if (mutations.Count > 0 && bytes > maxBytes)
                {
                    break;
                }
                mutations.Add(new Mutation
                {
                    LocalSeq = reader.GetInt64(0),
                    Entity = reader.GetString(1),
                    Op = reader.GetString(2),
                    EntityKey = reader.GetString(3),
                    Payload = payload,
                    OccurredAt = ParseTimestamp(reader.GetString(5)),
                });
            }
        }
        if (mutations.Count == 0)
        {
            return null;
        }
        if (afterSeq is { } previous)
        {
            return new PendingBatch(previous, mutations);
        }

        // Every local row before the first unanswered one has been answered: the batch follows the last of them.
        await using var before = connection.CreateCommand();
        before.CommandText = """
            SELECT COALESCE(MAX(seq), 0) FROM sync_mutations
            WHERE target_key = $target AND source = 'local' AND seq < $first
            """;
        before.Parameters.AddWithValue("$target", identity.Target);
        before.Parameters.AddWithValue("$first", mutations[0].LocalSeq);
        return new PendingBatch((long)(await before.ExecuteScalarAsync(ct))!, mutations);
    }

    /// <summary>Notes how far the journal has been sent, so that status can tell rows in flight from rows not sent yet.</summary>
    public async Task MarkSentAsync(PendingBatch batch, CancellationToken ct)
    {
        await using var connection = await database.OpenAsync(ct);
        await using var update = connection.CreateCommand();
        update.CommandText = """
            INSERT INTO sync_state (target_key, sent_through) VALUES ($target, $last)
            ON CONFLICT (target_key) DO UPDATE SET sent_through = MAX(sent_through, excluded.sent_through)
            """;
        update.Parameters.AddWithValue("$target", identity.Target);
        update.Parameters.AddWithValue("$last", batch.LastSeq);
        await update.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// Another writer may use SQLite's own format ("2025-01-31 12:00:00", UTC). An unreadable value must
    /// not stop the journal, so it travels as the Unix epoch; the row itself is unchanged.
    /// </summary>
    private static DateTimeOffset ParseTimestamp(string text) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var value)
            ? value
            : DateTimeOffset.UnixEpoch;
}
