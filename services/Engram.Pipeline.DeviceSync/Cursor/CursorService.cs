using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Apply;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>
/// Records the cloud's answers in the Engram database: local→cloud seq mappings (PR #339's
/// <c>sync_seq_mapping</c>), acks and rejections in upstream's own columns (so that Engram's own status reads
/// right), and the target's unified cursor. Every answer may arrive twice, late or out of order; applying it again
/// changes nothing, because each write is conditional on the state it moves from.
/// </summary>
public sealed class CursorService(EngramDatabase database, DeviceIdentity identity, TimeProvider clock)
{
    /// <summary>
    /// Applies a PushAccepted in one short transaction. Returns how many of its <c>conflict</c> rejections it left
    /// unrecorded because they are for rows Engram withdrew before the cloud placed them.
    /// </summary>
    public async Task<int> ApplyAcceptedAsync(PushAccepted reply, CancellationToken ct)
    {
        CheckAddressedToUs(reply.DeviceId);
        var target = new SyncTarget(reply.TargetKey);
        var now = EngramTime.Iso(clock.GetUtcNow());
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction();

        long lastAcked = 0;
        var ignoredConflicts = 0;
        await using (var map = transaction.Command("""
            INSERT INTO sync_seq_mapping (target_key, local_seq, cloud_seq, synced_at) VALUES ($target, $local, $cloud, $now)
            ON CONFLICT (target_key, local_seq) DO NOTHING;
            SELECT cloud_seq FROM sync_seq_mapping WHERE target_key = $target AND local_seq = $local;
            """, ("$target", target.Key), ("$now", now)))
        await using (var ack = Acknowledge.Command(transaction))
        using (var applier = new EngramApplier(transaction, clock))
        {
            foreach (var mapping in reply.Mappings)
            {
                var stored = (long)(await map.Bind(("$local", mapping.LocalSeq), ("$cloud", mapping.CloudSeq)).ExecuteScalarAsync(ct))!;
                if (stored != mapping.CloudSeq)
                {
                    throw new InvalidOperationException(
                        $"The cloud maps local seq {mapping.LocalSeq} of {target} to cloud seq {mapping.CloudSeq}, but this device " +
                        $"recorded {stored} before. The Engram database and the cloud disagree; refusing to change either.");
                }
                Acknowledge.Row(ack, applier, target, mapping);
                lastAcked = Math.Max(lastAcked, mapping.LocalSeq);
            }
        }

        await using (var record = transaction.Command("""
            INSERT INTO pipeline_rejections (target_key, local_seq, reason, detail, rejected_at)
            VALUES ($target, $local, $reason, $detail, $now)
            ON CONFLICT (target_key, local_seq) DO NOTHING;
            UPDATE sync_mutations SET disposition = 'quarantined', disposition_reason = $reason, disposition_evidence = $evidence,
                disposition_at = datetime('now')
            WHERE target_key = 'cloud' AND seq = $local AND acked_at IS NULL AND disposition = 'pending';
            """, ("$target", target.Key), ("$now", now)))
        await using (var withdrawn = transaction.Command("""
            SELECT NOT EXISTS (SELECT 1 FROM sync_mutations WHERE target_key = 'cloud' AND seq = $local)
               AND NOT EXISTS (SELECT 1 FROM sync_seq_mapping WHERE target_key = $target AND local_seq = $local)
            """, ("$target", target.Key)))
        {
            // Quarantined, not a new disposition: upstream re-journals an entity whose rows are neither pending nor
            // quarantined, and would send the refused row again; its status counts quarantined rows as problems.
            foreach (var rejection in reply.Rejected)
            {
                // A delayed copy of a batch can reach the cloud after Engram withdrew one of its rows (a replaced session
                // upsert) and the resend without that row moved the cloud's mark past it: the cloud, which never stored
                // the row, answers conflict. Recorded, it would read as a reset or cloned database; the row is gone and
                // needs no answer. Leaving it out of the chain only lowers a previousLocalSeq the cloud's mark is above.
                if (rejection.Reason == RejectionReasons.Conflict
                    && (long)(await withdrawn.Bind(("$local", rejection.LocalSeq)).ExecuteScalarAsync(ct))! == 1)
                {
                    ignoredConflicts++;
                    continue;
                }
                var evidence = JsonSerializer.Serialize(new
                {
                    source = "engram-pipeline", target = target.Project, reason = rejection.Reason, detail = rejection.Detail,
                });
                await record.Bind(("$local", rejection.LocalSeq), ("$reason", rejection.Reason), ("$detail", rejection.Detail),
                    ("$evidence", evidence)).ExecuteNonQueryAsync(ct);
            }
        }

        await RecordAnsweredAsync(transaction, target, lastAcked, reply.Head, ct);
        await transaction.CommitAsync(ct);
        return ignoredConflicts;
    }

    /// <summary>Keeps a whole-batch refusal where status and Engram's own status can show it.</summary>
    public async Task RecordRefusalAsync(PushRejected refusal, CancellationToken ct)
    {
        CheckAddressedToUs(refusal.DeviceId);
        var target = new SyncTarget(refusal.TargetKey);
        var message = $"{refusal.Reason}: {refusal.Detail}";
        await using var connection = await database.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction();
        // Upstream's own reason codes, so that its status explains the refusal.
        var reasonCode = refusal.Reason == RejectionReasons.NotAuthorised ? "policy_forbidden" : "transport_failed";
        await using var state = transaction.Command("""
            INSERT INTO pipeline_targets (target_key, last_refusal, last_refusal_at) VALUES ($target, $message, $now)
            ON CONFLICT (target_key) DO UPDATE SET last_refusal = excluded.last_refusal, last_refusal_at = excluded.last_refusal_at;
            INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ($target, 'idle', datetime('now'));
            UPDATE sync_state SET lifecycle = 'degraded', consecutive_failures = consecutive_failures + 1, reason_code = $code,
                reason_message = $message, last_error = $message, updated_at = datetime('now')
            WHERE target_key = $target;
            """, ("$target", target.Key), ("$message", message), ("$now", EngramTime.Iso(clock.GetUtcNow())), ("$code", reasonCode));
        await state.ExecuteNonQueryAsync(ct);
        await transaction.CommitAsync(ct);
    }

    /// <summary>
    /// What every answer to a push moves, as upstream's own ack does: <c>sync_state('cloud')</c> and the project's row
    /// (<c>last_acked_seq</c>, lifecycle <c>pending</c> while rows wait, else <c>healthy</c>, failures cleared, the
    /// success time), the head heard of, and the unified cursor.
    /// </summary>
    internal static Task RecordAnsweredAsync(SqliteTransaction transaction, SyncTarget target, long lastAcked, long head, CancellationToken ct) =>
        RecordAsync(transaction, target, lastAcked, head, $"""
            UPDATE sync_state SET
                last_acked_seq = MAX(last_acked_seq, $acked),
                lifecycle = CASE WHEN {RowsWaitSql} THEN 'pending' ELSE 'healthy' END,
                consecutive_failures = 0, backoff_until = NULL, reason_code = NULL, reason_message = NULL, last_error = NULL,
                last_success_at = datetime('now'), updated_at = datetime('now')
            WHERE target_key IN ('cloud', $target);
            """, ct);

    /// <summary>
    /// What a pulled page moves: the head heard of, the unified cursor, and for own rows it brought back and acked,
    /// <c>last_acked_seq</c> and the lifecycle as upstream's ack moves them. Unlike an answer to a push it clears no
    /// failure and leaves a <c>degraded</c> row degraded: a pull says nothing about whether this device may push, and
    /// upstream's own pull runs only after a good push, or preserves the sync state while its push is blocked.
    /// </summary>
    internal static Task RecordPulledAsync(SqliteTransaction transaction, SyncTarget target, long lastAcked, long head, CancellationToken ct) =>
        RecordAsync(transaction, target, lastAcked, head, $"""
            UPDATE sync_state SET
                last_acked_seq = MAX(last_acked_seq, $acked),
                lifecycle = CASE WHEN lifecycle = 'degraded' THEN 'degraded' WHEN {RowsWaitSql} THEN 'pending' ELSE 'healthy' END,
                updated_at = datetime('now')
            WHERE target_key IN ('cloud', $target) AND $acked > 0;
            """, ct);

    /// <summary>Whether journal rows wait to be sent: any for <c>sync_state('cloud')</c>, the project's for its row.</summary>
    private const string RowsWaitSql = """
        EXISTS (
            SELECT 1 FROM sync_mutations INDEXED BY idx_sync_mutations_transport
            WHERE target_key = 'cloud' AND disposition = 'pending' AND acked_at IS NULL
              AND (sync_state.target_key = 'cloud' OR project = $project))
        """;

    private static async Task RecordAsync(
        SqliteTransaction transaction, SyncTarget target, long lastAcked, long head, string stateSql, CancellationToken ct)
    {
        await using var state = transaction.Command("""
            INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ($target, 'idle', datetime('now'));
            """ + stateSql + """
            INSERT INTO pipeline_targets (target_key, cloud_head) VALUES ($target, $head)
            ON CONFLICT (target_key) DO UPDATE SET cloud_head = MAX(cloud_head, excluded.cloud_head);
            """ + AdvanceCursorSql, ("$target", target.Key), ("$project", target.Project), ("$acked", lastAcked), ("$head", head));
        await state.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// Rule 5: the cursor moves only over a gap-free run of cloud seqs this device knows: its own mutations (mapped)
    /// and other devices' mutations it has taken in (<c>pipeline_applied</c>). It walks the consecutive known seqs just
    /// above it and stops at the first unknown one; it never moves back.
    /// </summary>
    internal const string AdvanceCursorSql = """
        UPDATE sync_state SET unified_cursor = COALESCE((
            SELECT MAX(cloud_seq) FROM (
                SELECT cloud_seq, ROW_NUMBER() OVER (ORDER BY cloud_seq) AS rank FROM (
                    SELECT cloud_seq FROM sync_seq_mapping
                    WHERE target_key = $target AND cloud_seq > sync_state.unified_cursor
                    UNION ALL
                    SELECT cloud_seq FROM pipeline_applied
                    WHERE target_key = $target AND cloud_seq > sync_state.unified_cursor))
            WHERE cloud_seq = sync_state.unified_cursor + rank), unified_cursor)
        WHERE target_key = $target;
        """;

    private void CheckAddressedToUs(string deviceId)
    {
        if (deviceId != identity.DeviceId)
        {
            throw new InvalidOperationException($"Received an answer for device {deviceId}, but this is device {identity.DeviceId}.");
        }
    }
}
