using System.Text;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Journal;

/// <summary>
/// Reads Engram's journal (<c>sync_mutations</c>) as upstream defines what is still to send: rows of
/// <c>target_key = 'cloud'</c>, not acked, <c>disposition = 'pending'</c>, of one project, in seq order. Whoever wrote
/// them (the Engram application, above all); with the gaps Engram leaves (a newer pending session upsert deletes the
/// older one) and within the batch limits.
/// </summary>
public sealed class JournalReader(EngramDatabase database)
{
    /// <summary>
    /// The next batch of <paramref name="target"/> after <paramref name="afterSeq"/>, or from its first pending row
    /// when it is null; null when nothing is pending.
    /// </summary>
    public async Task<PendingBatch?> ReadBatchAsync(SyncTarget target, long? afterSeq, int maxMutations, int maxBytes, CancellationToken ct)
    {
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction(deferred: true);
        // idx_sync_mutations_transport (target_key, disposition, acked_at, seq) walks the pending rows in order.
        await using var select = transaction.Command("""
            SELECT seq, entity, op, entity_key, payload, occurred_at
            FROM sync_mutations INDEXED BY idx_sync_mutations_transport
            WHERE target_key = 'cloud' AND disposition = 'pending' AND acked_at IS NULL AND seq > $after AND project = $project
            ORDER BY seq
            LIMIT $limit
            """, ("$project", target.Project), ("$after", afterSeq ?? 0), ("$limit", maxMutations));
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
                    // Engram writes datetime('now'); an unreadable value must not stop the journal, so it travels as the epoch.
                    OccurredAt = EngramTime.Parse(reader.GetString(5)) ?? DateTimeOffset.UnixEpoch,
                });
            }
        }
        if (mutations.Count == 0)
        {
            return null;
        }
        if (afterSeq is { } previous)
        {
            return new PendingBatch(target, previous, mutations);
        }

        // The first pending row follows the last row the cloud has answered (accepted or rejected); rows Engram
        // removed or never sends (superseded, quarantined by Engram itself) are not in the cloud's chain.
        await using var answered = transaction.Command("""
            SELECT MAX(seq) FROM (
                SELECT MAX(local_seq) AS seq FROM sync_seq_mapping WHERE target_key = $target AND local_seq < $first
                UNION ALL
                SELECT MAX(local_seq) FROM pipeline_rejections WHERE target_key = $target AND local_seq < $first)
            """, ("$target", target.Key), ("$first", mutations[0].LocalSeq));
        return new PendingBatch(target, await answered.ExecuteScalarAsync(ct) as long? ?? 0, mutations);
    }

    /// <summary>Notes how far the target's journal has been sent, so that status can tell rows in flight from rows not sent yet.</summary>
    public async Task MarkSentAsync(PendingBatch batch, CancellationToken ct)
    {
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction();
        await using var update = transaction.Command("""
            INSERT INTO pipeline_targets (target_key, sent_through) VALUES ($target, $last)
            ON CONFLICT (target_key) DO UPDATE SET sent_through = MAX(sent_through, excluded.sent_through)
            """, ("$target", batch.Target.Key), ("$last", batch.LastSeq));
        await update.ExecuteNonQueryAsync(ct);
        await transaction.CommitAsync(ct);
    }
}
