using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Apply;
using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Pull;

/// <summary>What applying a page did.</summary>
public sealed record PageResult(int Applied, int OwnRecognised, long Cursor, long Head);

/// <summary>
/// Applies a page of a target's cloud log to the Engram database, in short transactions of at most
/// <see cref="ChunkRows"/> rows (the Engram application writes the same file). This device's own rows become mappings
/// and acks, never applied again (bug #238); every other device's row is taken in once (<c>pipeline_applied</c>):
/// applied into Engram's own tables with upstream's rules, unless this device's own edit of the entity comes later in
/// cloud order or is not placed yet (rule 7). The cursor moves with each transaction to the last seq it examined, and
/// never past a seq the page did not cover.
/// </summary>
public sealed class PageApplier(EngramDatabase database, DeviceIdentity identity, TimeProvider clock)
{
    /// <summary>Rows per write transaction: a page of large observations is megabytes.</summary>
    public const int ChunkRows = 100;

    /// <summary>Deferred rows retried per transaction, once their parents may have arrived.</summary>
    private const int ReplayRows = 100;

    public async Task<PageResult> ApplyAsync(SyncTarget target, MutationsPage page, CancellationToken ct)
    {
        if (page.TargetKey != target.Project)
        {
            throw new InvalidOperationException($"Received a page of {page.TargetKey} for {target}.");
        }
        var cursor = await ReadCursorAsync(target, ct);
        // A page that starts above cursor + 1 (a stale duplicate) cannot be placed: nothing of it is used.
        var usable = page.Mutations.Count > 0 && page.Mutations[0].CloudSeq <= cursor + 1
            && page.Mutations.Select((row, i) => row.CloudSeq == page.Mutations[0].CloudSeq + i).All(contiguous => contiguous);
        var rows = usable ? page.Mutations.Where(r => r.CloudSeq > cursor).ToList() : [];
        int applied = 0, own = 0;
        // No rows still records the head the page reports.
        var chunks = rows.Count > 0 ? rows.Chunk(ChunkRows).ToList() : [[]];
        foreach (var chunk in chunks)
        {
            await using var connection = await database.OpenAsync(ct);
            await using var transaction = connection.BeginTransaction();
            long lastOwn = 0;
            using (var writer = new Writer(transaction, target, clock))
            {
                foreach (var row in chunk)
                {
                    writer.Examine(row.CloudSeq);
                    if (row.DeviceId == identity.DeviceId)
                    {
                        writer.RecogniseOwn(row);
                        lastOwn = Math.Max(lastOwn, row.LocalSeq);
                        own++;
                    }
                    else if (writer.TakeIn(row))
                    {
                        applied++;
                    }
                }
                writer.ReplayDeferred(ReplayRows);
            }
            // Every seq up to the chunk's last was examined; after the last chunk, up to what the page examined.
            var through = chunk.Length > 0 ? chunk[^1].CloudSeq : cursor;
            if (usable && chunk == chunks[^1])
            {
                through = Math.Max(through, page.ThroughSeq);
            }
            await using (var move = transaction.Command("UPDATE sync_state SET unified_cursor = MAX(unified_cursor, $through) WHERE target_key = $target",
                ("$target", target.Key), ("$through", through)))
            {
                await move.ExecuteNonQueryAsync(ct);
            }
            await CursorService.RecordPulledAsync(transaction, target, lastOwn, page.Head, ct);
            cursor = await ReadCursorAsync(transaction, target, ct);
            await transaction.CommitAsync(ct);
        }
        return new PageResult(applied, own, cursor, page.Head);
    }

    private async Task<long> ReadCursorAsync(SyncTarget target, CancellationToken ct)
    {
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction(deferred: true);
        return await ReadCursorAsync(transaction, target, ct);
    }

    private static async Task<long> ReadCursorAsync(SqliteTransaction transaction, SyncTarget target, CancellationToken ct)
    {
        await using var read = transaction.Command("SELECT unified_cursor FROM sync_state WHERE target_key = $target", ("$target", target.Key));
        return await read.ExecuteScalarAsync(ct) as long? ?? 0;
    }

    /// <summary>The statements of one transaction, prepared once for its rows.</summary>
    private sealed class Writer : IDisposable
    {
        private readonly SyncTarget _target;
        private readonly EngramApplier _applier;
        private readonly SqliteCommand _map;
        private readonly SqliteCommand _acknowledge;
        private readonly SqliteCommand _taken;
        private readonly SqliteCommand _record;
        private readonly SqliteCommand _ownLater;
        private long? _oldestDeferred;

        public Writer(SqliteTransaction transaction, SyncTarget target, TimeProvider clock)
        {
            _target = target;
            _acknowledge = Acknowledge.Command(transaction);
            _map = transaction.Command("""
                INSERT INTO sync_seq_mapping (target_key, local_seq, cloud_seq, synced_at) VALUES ($target, $local, $cloud, $now)
                ON CONFLICT (target_key, local_seq) DO NOTHING;
                SELECT cloud_seq FROM sync_seq_mapping WHERE target_key = $target AND local_seq = $local;
                """, ("$target", target.Key), ("$now", EngramTime.Iso(clock.GetUtcNow())));
            _taken = transaction.Command("SELECT EXISTS (SELECT 1 FROM pipeline_applied WHERE target_key = $target AND cloud_seq = $cloud)",
                ("$target", target.Key));
            _record = transaction.Command("""
                INSERT INTO pipeline_applied (target_key, cloud_seq, origin_device, origin_local_seq, entity, entity_key, op, outcome, applied_at)
                VALUES ($target, $cloud, $origin, $originSeq, $entity, $key, $op, $outcome, $now)
                """, ("$target", target.Key), ("$now", EngramTime.Iso(clock.GetUtcNow())));
            // Rule 7, asked of the latest own row of the entity only: the cloud places a device's rows in local seq
            // order (I3), so if any own edit is unplaced or placed later, the latest is. A row Engram's own sync acked
            // long ago (no mapping) is placed before anything this log holds.
            _ownLater = transaction.Command("""
                SELECT EXISTS (
                    SELECT 1 FROM (
                        SELECT seq, acked_at FROM sync_mutations INDEXED BY idx_sync_mutations_lookup
                        WHERE target_key = 'cloud' AND entity = $entity AND entity_key = $key AND disposition = 'pending'
                        ORDER BY seq DESC LIMIT 1) AS latest
                    LEFT JOIN sync_seq_mapping s ON s.target_key = $target AND s.local_seq = latest.seq
                    WHERE latest.acked_at IS NULL OR s.cloud_seq > $cloud)
                """, ("$target", target.Key));
            _applier = new EngramApplier(transaction, clock, OwnEditIsLater);
            _oldestDeferred = _applier.OldestDeferred(target.Project);
        }

        /// <summary>
        /// Before the log's row at <paramref name="cloudSeq"/>: rows that waited for a parent past the horizon end as
        /// dead, at the same seq on every device. Rows deferred since the transaction began are younger than the horizon.
        /// </summary>
        public void Examine(long cloudSeq)
        {
            if (_oldestDeferred is { } oldest && cloudSeq - oldest > EngramApplier.DeferralHorizon)
            {
                _applier.ExpireDeferred(_target.Project, cloudSeq);
                _oldestDeferred = _applier.OldestDeferred(_target.Project);
            }
        }

        /// <summary>This device's own row: record where the cloud put it, even if Engram removed the row since; never apply it again.</summary>
        public void RecogniseOwn(CloudMutation row)
        {
            var stored = (long)_map.Bind(("$local", row.LocalSeq), ("$cloud", row.CloudSeq)).ExecuteScalar()!;
            if (stored != row.CloudSeq)
            {
                throw new InvalidOperationException(
                    $"The cloud puts local seq {row.LocalSeq} of {_target} at cloud seq {row.CloudSeq}, but this device recorded {stored}.");
            }
            Acknowledge.Row(_acknowledge, _applier, _target, new SeqMapping { LocalSeq = row.LocalSeq, CloudSeq = row.CloudSeq });
        }

        /// <summary>Another device's row: take it in once; returns false when it was taken in before.</summary>
        public bool TakeIn(CloudMutation row)
        {
            if ((long)_taken.Bind(("$cloud", row.CloudSeq)).ExecuteScalar()! == 1)
            {
                return false;
            }
            var mutation = new PulledMutation(_target.Project, row.CloudSeq, row.Entity, row.Op, row.EntityKey, row.Payload);
            string outcome;
            if (OwnEditIsLater(row.Entity, row.EntityKey, row.CloudSeq))
            {
                _applier.Superseded(mutation);
                outcome = "superseded";
            }
            else
            {
                outcome = _applier.Apply(mutation).Outcome switch
                {
                    ApplyOutcome.Applied => "applied",
                    ApplyOutcome.Skipped => "skipped",
                    ApplyOutcome.Deferred => "deferred",
                    _ => "dead",
                };
            }
            _record.Bind(("$cloud", row.CloudSeq), ("$origin", row.DeviceId), ("$originSeq", row.LocalSeq), ("$entity", row.Entity),
                ("$key", row.EntityKey), ("$op", row.Op), ("$outcome", outcome)).ExecuteNonQuery();
            if (outcome == "applied" && row.Entity is "session" or "observation")
            {
                // What waited for this parent applies now, in its place in cloud order: before the rows after it.
                _applier.ReplayDeferred(_target.Project, ReplayRows);
            }
            return true;
        }

        public void ReplayDeferred(int limit) => _applier.ReplayDeferred(_target.Project, limit);

        private bool OwnEditIsLater(string entity, string key, long cloudSeq) =>
            (long)_ownLater.Bind(("$entity", entity), ("$key", key), ("$cloud", cloudSeq)).ExecuteScalar()! == 1;

        public void Dispose()
        {
            _applier.Dispose();
            _map.Dispose();
            _acknowledge.Dispose();
            _taken.Dispose();
            _record.Dispose();
            _ownLater.Dispose();
        }
    }
}
