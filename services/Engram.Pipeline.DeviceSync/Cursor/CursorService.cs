using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Entities;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>
/// Records the cloud's answers on the device: local→cloud seq mappings, acked and rejected journal
/// rows, and the unified cursor. Every answer may arrive twice, late or out of order; applying it
/// again changes nothing, because each write is conditional on the state it moves from.
/// </summary>
public sealed class CursorService(DeviceDatabase database, DeviceIdentity identity, TimeProvider clock)
{
    /// <summary>Applies a PushAccepted in one transaction.</summary>
    public async Task ApplyAcceptedAsync(PushAccepted reply, CancellationToken ct)
    {
        CheckAddressedToUs(reply.TargetKey, reply.DeviceId);
        var now = DeviceDatabase.Timestamp(clock.GetUtcNow());
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction();

        await using (var map = transaction.Command("""
            INSERT INTO sync_seq_mapping (target_key, local_seq, cloud_seq, synced_at)
            VALUES ($target, $local, $cloud, $now)
            ON CONFLICT (target_key, local_seq) DO NOTHING;
            SELECT cloud_seq FROM sync_seq_mapping WHERE target_key = $target AND local_seq = $local;
            """, ("$target", identity.Target), ("$now", now)))
        await using (var ack = transaction.Command("""
            UPDATE sync_mutations SET acked_at = $now
            WHERE seq = $local AND target_key = $target AND source = 'local' AND acked_at IS NULL;
            UPDATE entities SET cloud_seq = $cloud
            WHERE target_key = $target AND local_seq = $local AND cloud_seq IS NULL;
            """, ("$target", identity.Target), ("$now", now)))
        {
            var local = map.Parameters.Add("$local", SqliteType.Integer);
            var cloud = map.Parameters.Add("$cloud", SqliteType.Integer);
            var ackLocal = ack.Parameters.Add("$local", SqliteType.Integer);
            var ackCloud = ack.Parameters.Add("$cloud", SqliteType.Integer);
            foreach (var mapping in reply.Mappings)
            {
                local.Value = ackLocal.Value = mapping.LocalSeq;
                cloud.Value = ackCloud.Value = mapping.CloudSeq;
                var stored = (long)(await map.ExecuteScalarAsync(ct))!;
                if (stored != mapping.CloudSeq)
                {
                    throw new InvalidOperationException(
                        $"The cloud maps local seq {mapping.LocalSeq} to cloud seq {mapping.CloudSeq}, but this device " +
                        $"recorded {stored} before. The device database and the cloud disagree; refusing to change either.");
                }
                await ack.ExecuteNonQueryAsync(ct);
            }
        }

        await using (var reject = transaction.Command("""
            UPDATE sync_mutations SET rejected_at = $now, reject_reason = $reason, reject_detail = $detail
            WHERE seq = $local AND target_key = $target AND source = 'local' AND acked_at IS NULL AND rejected_at IS NULL
            RETURNING entity, entity_key
            """, ("$target", identity.Target), ("$now", now)))
        {
            var local = reject.Parameters.Add("$local", SqliteType.Integer);
            var reason = reject.Parameters.Add("$reason", SqliteType.Text);
            var detail = reject.Parameters.Add("$detail", SqliteType.Text);
            using var entities = new EntityWriter(transaction);
            foreach (var rejection in reply.Rejected)
            {
                local.Value = rejection.LocalSeq;
                reason.Value = rejection.Reason;
                detail.Value = rejection.Detail;
                await using var reader = await reject.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    // The edit was applied locally when it was recorded; without it the entity is what the rest of its history makes it.
                    var (entity, key) = (reader.GetString(0), reader.GetString(1));
                    await reader.DisposeAsync();
                    entities.Refold(identity.Target, entity, key, now);
                }
            }
        }

        await using (var state = transaction.Command("""
            INSERT INTO sync_state (target_key, cloud_head, updated_at) VALUES ($target, $head, $now)
            ON CONFLICT (target_key) DO UPDATE SET
                cloud_head = MAX(cloud_head, excluded.cloud_head), updated_at = excluded.updated_at;
            """ + AdvanceCursorSql, ("$target", identity.Target), ("$head", reply.Head), ("$now", now)))
        {
            await state.ExecuteNonQueryAsync(ct);
        }
        await transaction.CommitAsync(ct);
    }

    /// <summary>Keeps a whole-batch refusal where status can show it.</summary>
    public async Task RecordRefusalAsync(PushRejected refusal, CancellationToken ct)
    {
        CheckAddressedToUs(refusal.TargetKey, refusal.DeviceId);
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction();
        await using var state = transaction.Command("""
            INSERT INTO sync_state (target_key, last_error, updated_at) VALUES ($target, $error, $now)
            ON CONFLICT (target_key) DO UPDATE SET last_error = excluded.last_error, updated_at = excluded.updated_at
            """, ("$target", identity.Target), ("$error", $"{refusal.Reason}: {refusal.Detail}"),
            ("$now", DeviceDatabase.Timestamp(clock.GetUtcNow())));
        await state.ExecuteNonQueryAsync(ct);
        await transaction.CommitAsync(ct);
    }

    /// <summary>
    /// Rule 5: the cursor moves only over a gap-free run of cloud seqs this device knows: its own
    /// mutations (mapped) and other devices' mutations it has applied (journaled as remote). It walks
    /// the consecutive known seqs just above it and stops at the first unknown one; it never moves back.
    /// </summary>
    internal const string AdvanceCursorSql = """
        UPDATE sync_state SET unified_cursor = COALESCE((
            SELECT MAX(cloud_seq) FROM (
                SELECT cloud_seq, ROW_NUMBER() OVER (ORDER BY cloud_seq) AS rank FROM (
                    SELECT cloud_seq FROM sync_seq_mapping
                    WHERE target_key = $target AND cloud_seq > sync_state.unified_cursor
                    UNION ALL
                    SELECT cloud_seq FROM sync_mutations
                    WHERE target_key = $target AND source = 'remote' AND cloud_seq > sync_state.unified_cursor))
            WHERE cloud_seq = sync_state.unified_cursor + rank), unified_cursor)
        WHERE target_key = $target;
        """;

    private void CheckAddressedToUs(string targetKey, string deviceId)
    {
        if (targetKey != identity.Target || deviceId != identity.DeviceId)
        {
            throw new InvalidOperationException(
                $"Received an answer for {targetKey}/{deviceId}, but this is device {identity.DeviceId} on {identity.Target}.");
        }
    }
}
