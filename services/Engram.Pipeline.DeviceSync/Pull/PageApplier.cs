using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Entities;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Pull;

/// <summary>What applying a page did.</summary>
public sealed record PageResult(int Applied, int OwnRecognised, long Cursor, long Head);

/// <summary>
/// Applies a page of the cloud log in one SQLite transaction: this device's own rows become
/// mappings (never applied again: bug #238), other devices' rows are journaled once and folded into
/// the entities in cloud order, and the cursor moves to the page's <c>throughSeq</c> (every seq up to
/// it was examined), never past a seq the page did not cover.
/// </summary>
public sealed class PageApplier(DeviceDatabase database, DeviceIdentity identity, TimeProvider clock)
{
    public async Task<PageResult> ApplyAsync(MutationsPage page, CancellationToken ct)
    {
        if (page.TargetKey != identity.Target)
        {
            throw new InvalidOperationException($"Received a page of {page.TargetKey}, but this device syncs {identity.Target}.");
        }
        var now = DeviceDatabase.Timestamp(clock.GetUtcNow());
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction();
        var cursor = ReadCursor(transaction);

        int applied = 0, own = 0;
        // A page that starts above cursor + 1 (a stale duplicate) cannot be placed: nothing of it is used.
        var usable = page.Mutations.Count > 0 && page.Mutations[0].CloudSeq <= cursor + 1
            && page.Mutations.Select((row, i) => row.CloudSeq == page.Mutations[0].CloudSeq + i).All(contiguous => contiguous);
        if (usable)
        {
            using var writer = new Writer(transaction, identity, now);
            foreach (var row in page.Mutations.Where(r => r.CloudSeq > cursor))
            {
                if (row.DeviceId == identity.DeviceId)
                {
                    writer.RecogniseOwn(row);
                    own++;
                }
                else if (writer.ApplyForeign(row))
                {
                    applied++;
                }
            }
        }

        using (var state = transaction.Command("""
                UPDATE sync_state SET
                    unified_cursor = MAX(unified_cursor, $through),
                    cloud_head = MAX(cloud_head, $head),
                    updated_at = $now
                WHERE target_key = $target;
                """ + CursorService.AdvanceCursorSql + """
                SELECT unified_cursor FROM sync_state WHERE target_key = $target;
                """, ("$target", identity.Target), ("$through", usable ? page.ThroughSeq : cursor), ("$head", page.Head), ("$now", now)))
        {
            cursor = (long)(await state.ExecuteScalarAsync(ct))!;
        }
        await transaction.CommitAsync(ct);
        return new PageResult(applied, own, cursor, page.Head);
    }

    private long ReadCursor(SqliteTransaction transaction)
    {
        using var command = transaction.Command("""
            INSERT INTO sync_state (target_key) VALUES ($target) ON CONFLICT DO NOTHING;
            SELECT unified_cursor FROM sync_state WHERE target_key = $target;
            """, ("$target", identity.Target));
        return (long)command.ExecuteScalar()!;
    }

    private sealed class Writer : IDisposable
    {
        private readonly SqliteCommand _map;
        private readonly SqliteCommand _ack;
        private readonly SqliteCommand _journal;
        private readonly SqliteCommand _ownLater;
        private readonly EntityWriter _entities;
        private readonly DeviceIdentity _identity;
        private readonly string _now;

        public Writer(SqliteTransaction transaction, DeviceIdentity identity, string now)
        {
            _identity = identity;
            _now = now;
            _entities = new EntityWriter(transaction);
            _map = transaction.Command("""
                INSERT INTO sync_seq_mapping (target_key, local_seq, cloud_seq, synced_at)
                SELECT $target, $local, $cloud, $now
                WHERE EXISTS (SELECT 1 FROM sync_mutations WHERE seq = $local AND target_key = $target AND source = 'local')
                ON CONFLICT (target_key, local_seq) DO NOTHING;
                SELECT cloud_seq FROM sync_seq_mapping WHERE target_key = $target AND local_seq = $local;
                """, ("$target", identity.Target));
            _ack = transaction.Command("""
                UPDATE sync_mutations SET acked_at = $now
                WHERE seq = $local AND target_key = $target AND source = 'local' AND acked_at IS NULL;
                UPDATE entities SET cloud_seq = $cloud WHERE target_key = $target AND local_seq = $local AND cloud_seq IS NULL;
                """, ("$target", identity.Target));
            _journal = transaction.Command("""
                INSERT INTO sync_mutations
                    (target_key, entity, entity_key, op, payload, source, occurred_at, acked_at, cloud_seq, origin_device)
                VALUES ($target, $entity, $key, $op, $payload, 'remote', $occurred, $now, $cloud, $origin)
                ON CONFLICT DO NOTHING
                """, ("$target", identity.Target));
            // Rule 7: this device's own edit of the entity that the cloud placed after this row, or has not placed yet, wins.
            // Only the latest own edit needs asking: the cloud places a device's edits in local seq order (I3),
            // so if any own edit is unplaced or placed later, the latest is. One index step, however long the history.
            _ownLater = transaction.Command("""
                SELECT EXISTS (
                    SELECT 1 FROM (
                        SELECT m.seq FROM sync_mutations m INDEXED BY sync_mutations_entity_local
                        WHERE m.target_key = $target AND m.entity = $entity AND m.entity_key = $key
                          AND m.source = 'local' AND m.rejected_at IS NULL
                        ORDER BY m.seq DESC LIMIT 1) AS latest
                    LEFT JOIN sync_seq_mapping s ON s.target_key = $target AND s.local_seq = latest.seq
                    WHERE s.cloud_seq IS NULL OR s.cloud_seq > $cloud)
                """, ("$target", identity.Target));
        }

        /// <summary>This device's own row: record where the cloud put it; never apply it again.</summary>
        public void RecogniseOwn(CloudMutation row)
        {
            _map.Bind(("$local", row.LocalSeq), ("$cloud", row.CloudSeq), ("$now", _now));
            var stored = _map.ExecuteScalar();
            if (stored is not long cloudSeq || cloudSeq != row.CloudSeq)
            {
                throw new InvalidOperationException(stored is null
                    ? $"The cloud holds local seq {row.LocalSeq} of this device ({_identity.DeviceId}) as cloud seq {row.CloudSeq}, " +
                      "but this journal has no such local row: was the device database reset or cloned under the same id?"
                    : $"The cloud puts local seq {row.LocalSeq} at cloud seq {row.CloudSeq}, but this device recorded {stored}.");
            }
            _ack.Bind(("$local", row.LocalSeq), ("$cloud", row.CloudSeq), ("$now", _now));
            _ack.ExecuteNonQuery();
        }

        /// <summary>Another device's row: journal it once and fold it in unless an own edit is later. Returns false if it was applied before.</summary>
        public bool ApplyForeign(CloudMutation row)
        {
            _journal.Bind(("$entity", row.Entity), ("$key", row.EntityKey), ("$op", row.Op), ("$payload", row.Payload),
                ("$occurred", DeviceDatabase.Timestamp(row.OccurredAt)), ("$now", _now), ("$cloud", row.CloudSeq),
                ("$origin", row.DeviceId));
            if (_journal.ExecuteNonQuery() == 0)
            {
                return false;
            }
            _ownLater.Bind(("$entity", row.Entity), ("$key", row.EntityKey), ("$cloud", row.CloudSeq));
            if ((long)_ownLater.ExecuteScalar()! == 0)
            {
                _entities.Apply(_identity.Target, row.Entity, row.EntityKey, row.Op, row.Payload, row.CloudSeq, localSeq: null, _now);
            }
            return true;
        }

        public void Dispose()
        {
            _map.Dispose();
            _ack.Dispose();
            _journal.Dispose();
            _ownLater.Dispose();
            _entities.Dispose();
        }
    }
}
