using Engram.Pipeline.Contracts;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Engram.Pipeline.CloudIngest.Push;

/// <summary>
/// Appends a device's batch to a target's cloud log in one transaction.
/// <list type="bullet">
/// <item>The device's row in <c>cloud_devices</c> is locked first: it serialises that device's batches,
/// holds its high-water mark, and makes duplicates and early batches decidable.</item>
/// <item>Seqs come from the target's counter row (<c>head = head + n</c>), locked until commit, so each
/// target's log is 1..head with no holes and readers never see seq k+1 before seq k.</item>
/// <item>Locks are always taken device row first, then target row, so concurrent batches cannot deadlock.</item>
/// </list>
/// </summary>
public sealed class PushIngestor(NpgsqlDataSource dataSource, IOptions<IngestOptions> options, TimeProvider clock)
{
    private readonly BatchValidator _validator = new(options.Value);

    public async Task<PushOutcome> IngestAsync(PushMutations batch, CancellationToken cancellationToken)
    {
        if (_validator.CheckBatch(batch) is var (reason, detail))
        {
            return Refuse(batch, reason, detail);
        }

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        var highWaterMark = await LockDeviceAsync(connection, batch, cancellationToken);
        if (batch.PreviousLocalSeq > highWaterMark)
        {
            // An earlier batch of this device has not committed yet (or was lost): accepting this one
            // would reorder the device's log. The device resends from the high-water mark.
            return Refuse(batch, RejectionReasons.OutOfOrder,
                $"previousLocalSeq {batch.PreviousLocalSeq} is ahead of the last local seq the cloud has, {highWaterMark}",
                highWaterMark);
        }

        var plan = Plan(batch, highWaterMark);
        var mappings = new List<SeqMapping>();
        var rejected = new List<MutationRejection>(plan.Rejected);

        if (plan.Duplicates.Count > 0)
        {
            await AnswerDuplicatesAsync(connection, batch, plan.Duplicates, mappings, rejected, cancellationToken);
        }

        var head = await AppendAsync(connection, batch, plan, mappings, cancellationToken);
        await transaction.CommitAsync(cancellationToken);

        mappings.Sort((a, b) => a.LocalSeq.CompareTo(b.LocalSeq));
        rejected.Sort((a, b) => a.LocalSeq.CompareTo(b.LocalSeq));
        var reply = new PushAccepted
        {
            TargetKey = batch.TargetKey,
            DeviceId = batch.DeviceId,
            Mappings = mappings,
            Rejected = rejected,
            Head = head,
        };
        return new PushOutcome.Accepted(reply, plan.Fresh.Count);
    }

    private static PushOutcome.Refused Refuse(PushMutations batch, string reason, string detail, long? expected = null) =>
        new(new PushRejected
        {
            TargetKey = batch.TargetKey ?? "",
            DeviceId = batch.DeviceId ?? "",
            Reason = reason,
            Detail = detail,
            ExpectedPreviousLocalSeq = expected,
        });

    /// <summary>Locks the device's row, creating it (and the target) on first contact; returns its high-water mark.</summary>
    private static async Task<long> LockDeviceAsync(NpgsqlConnection connection, PushMutations batch, CancellationToken ct)
    {
        const string lockSql = """
            SELECT last_local_seq FROM cloud_devices
            WHERE target_key = @target AND device_id = @device
            FOR UPDATE
            """;
        if (await ScalarAsync(connection, lockSql, batch, ct) is long existing)
        {
            return existing;
        }
        const string createSql = """
            INSERT INTO cloud_targets (target_key) VALUES (@target) ON CONFLICT DO NOTHING;
            INSERT INTO cloud_devices (target_key, device_id) VALUES (@target, @device) ON CONFLICT DO NOTHING;
            """;
        await using (var create = new NpgsqlCommand(createSql, connection))
        {
            create.Parameters.AddWithValue("target", batch.TargetKey);
            create.Parameters.AddWithValue("device", batch.DeviceId);
            await create.ExecuteNonQueryAsync(ct);
        }
        return (long)(await ScalarAsync(connection, lockSql, batch, ct))!;
    }

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, string sql, PushMutations batch, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("target", batch.TargetKey);
        command.Parameters.AddWithValue("device", batch.DeviceId);
        return await command.ExecuteScalarAsync(ct);
    }

    private sealed record BatchPlan(
        List<Mutation> Fresh, List<(Mutation Mutation, bool Valid)> Duplicates, List<MutationRejection> Rejected, long NewHighWaterMark);

    /// <summary>Sorts each mutation into fresh, duplicate (at or below the mark) or rejected.</summary>
    private BatchPlan Plan(PushMutations batch, long highWaterMark)
    {
        var fresh = new List<Mutation>();
        var duplicates = new List<(Mutation, bool)>();
        var rejected = new List<MutationRejection>();
        var previous = batch.PreviousLocalSeq;
        var newMark = highWaterMark;
        foreach (var mutation in batch.Mutations)
        {
            var problem = _validator.CheckMutation(mutation, previous);
            if (problem?.Reason == RejectionReasons.NonIncreasingLocalSeq)
            {
                // Its seq may belong to another mutation of this device: answer, but record nothing.
                rejected.Add(Rejection(mutation, problem.Value));
                continue;
            }
            previous = mutation.LocalSeq;
            if (mutation.LocalSeq <= highWaterMark)
            {
                duplicates.Add((mutation, problem is null));
                continue;
            }
            newMark = mutation.LocalSeq;
            if (problem is { } p)
            {
                rejected.Add(Rejection(mutation, p));
            }
            else
            {
                fresh.Add(mutation);
            }
        }
        return new BatchPlan(fresh, duplicates, rejected, newMark);
    }

    private static MutationRejection Rejection(Mutation mutation, (string Reason, string Detail) problem) =>
        new() { LocalSeq = mutation.LocalSeq, Reason = problem.Reason, Detail = problem.Detail };

    /// <summary>
    /// A mutation at or below the high-water mark was answered before: give the same answer. If the
    /// stored row differs, the device database was reset or cloned under the same id: a conflict.
    /// </summary>
    private static async Task AnswerDuplicatesAsync(NpgsqlConnection connection, PushMutations batch,
        List<(Mutation Mutation, bool Valid)> duplicates, List<SeqMapping> mappings, List<MutationRejection> rejected,
        CancellationToken ct)
    {
        const string sql = """
            SELECT d.local_seq, m.cloud_seq,
                   m.entity = d.entity AND m.op = d.op AND m.entity_key = d.entity_key
                       AND m.payload = d.payload::jsonb AS same,
                   r.reason, r.detail
            FROM unnest(@seqs, @entities, @ops, @keys, @payloads) AS d (local_seq, entity, op, entity_key, payload)
            LEFT JOIN cloud_mutations m
                   ON m.target_key = @target AND m.device_id = @device AND m.local_seq = d.local_seq
            LEFT JOIN cloud_rejections r
                   ON r.target_key = @target AND r.device_id = @device AND r.local_seq = d.local_seq
            """;
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("target", batch.TargetKey);
        command.Parameters.AddWithValue("device", batch.DeviceId);
        command.Parameters.AddWithValue("seqs", duplicates.Select(d => d.Mutation.LocalSeq).ToArray());
        command.Parameters.AddWithValue("entities", duplicates.Select(d => d.Mutation.Entity).ToArray());
        command.Parameters.AddWithValue("ops", duplicates.Select(d => d.Mutation.Op).ToArray());
        command.Parameters.AddWithValue("keys", duplicates.Select(d => d.Mutation.EntityKey).ToArray());
        // An invalid payload cannot be cast to jsonb; it can only match a stored rejection.
        command.Parameters.Add(new NpgsqlParameter("payloads", NpgsqlDbType.Array | NpgsqlDbType.Text)
        {
            Value = duplicates.Select(d => d.Valid ? d.Mutation.Payload : null).ToArray(),
        });

        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var localSeq = reader.GetInt64(0);
            if (!reader.IsDBNull(1))
            {
                if (!reader.IsDBNull(2) && reader.GetBoolean(2))
                {
                    mappings.Add(new SeqMapping { LocalSeq = localSeq, CloudSeq = reader.GetInt64(1) });
                }
                else
                {
                    rejected.Add(new MutationRejection
                    {
                        LocalSeq = localSeq,
                        Reason = RejectionReasons.Conflict,
                        Detail = $"local seq {localSeq} was accepted before as cloud seq {reader.GetInt64(1)} with other content; " +
                                 "was this device database reset or cloned under the same device id?",
                    });
                }
            }
            else if (!reader.IsDBNull(3))
            {
                rejected.Add(new MutationRejection { LocalSeq = localSeq, Reason = reader.GetString(3), Detail = reader.GetString(4) });
            }
            else
            {
                rejected.Add(new MutationRejection
                {
                    LocalSeq = localSeq,
                    Reason = RejectionReasons.Conflict,
                    Detail = $"local seq {localSeq} is at or below this device's high-water mark but was never pushed; " +
                             "was this device database reset or cloned under the same device id?",
                });
            }
        }
    }

    /// <summary>
    /// Gives the fresh mutations the next seqs and inserts them, records the new rejections and moves
    /// the high-water mark: one round trip. Returns the target's head.
    /// </summary>
    private async Task<long> AppendAsync(NpgsqlConnection connection, PushMutations batch, BatchPlan plan,
        List<SeqMapping> mappings, CancellationToken ct)
    {
        await using var commands = new NpgsqlBatch(connection);
        var fresh = plan.Fresh;
        if (fresh.Count > 0)
        {
            commands.BatchCommands.Add(Command("""
                WITH counter AS (
                    UPDATE cloud_targets SET head = head + @n WHERE target_key = @target RETURNING head
                )
                INSERT INTO cloud_mutations
                    (target_key, cloud_seq, device_id, local_seq, entity, op, entity_key, payload, occurred_at, accepted_at)
                SELECT @target, counter.head - @n + d.ord, @device, d.local_seq, d.entity, d.op, d.entity_key,
                       d.payload::jsonb, d.occurred_at, @now
                FROM counter,
                     unnest(@seqs, @entities, @ops, @keys, @payloads, @occurred)
                         WITH ORDINALITY AS d (local_seq, entity, op, entity_key, payload, occurred_at, ord)
                RETURNING local_seq, cloud_seq
                """,
                ("n", (long)fresh.Count),
                ("seqs", fresh.Select(m => m.LocalSeq).ToArray()),
                ("entities", fresh.Select(m => m.Entity).ToArray()),
                ("ops", fresh.Select(m => m.Op).ToArray()),
                ("keys", fresh.Select(m => m.EntityKey).ToArray()),
                ("payloads", fresh.Select(m => m.Payload).ToArray()),
                ("occurred", fresh.Select(m => m.OccurredAt.ToUniversalTime()).ToArray())));
        }
        var newRejections = plan.Rejected.Where(r => r.Reason != RejectionReasons.NonIncreasingLocalSeq).ToList();
        if (newRejections.Count > 0)
        {
            commands.BatchCommands.Add(Command("""
                INSERT INTO cloud_rejections (target_key, device_id, local_seq, reason, detail, rejected_at)
                SELECT @target, @device, r.local_seq, r.reason, r.detail, @now
                FROM unnest(@seqs, @reasons, @details) AS r (local_seq, reason, detail)
                ON CONFLICT DO NOTHING
                """,
                ("seqs", newRejections.Select(r => r.LocalSeq).ToArray()),
                ("reasons", newRejections.Select(r => r.Reason).ToArray()),
                ("details", newRejections.Select(r => r.Detail).ToArray())));
        }
        commands.BatchCommands.Add(Command("""
            UPDATE cloud_devices SET last_local_seq = @mark
            WHERE target_key = @target AND device_id = @device AND last_local_seq < @mark
            """, ("mark", plan.NewHighWaterMark)));
        commands.BatchCommands.Add(Command("SELECT head FROM cloud_targets WHERE target_key = @target"));

        long head = 0;
        await using (var reader = await commands.ExecuteReaderAsync(ct))
        {
            do
            {
                while (await reader.ReadAsync(ct))
                {
                    if (reader.FieldCount == 2)
                    {
                        mappings.Add(new SeqMapping { LocalSeq = reader.GetInt64(0), CloudSeq = reader.GetInt64(1) });
                    }
                    else
                    {
                        head = reader.GetInt64(0);
                    }
                }
            }
            while (await reader.NextResultAsync(ct));
        }
        return head;

        NpgsqlBatchCommand Command(string sql, params (string Name, object Value)[] parameters)
        {
            var command = new NpgsqlBatchCommand(sql);
            command.Parameters.AddWithValue("target", batch.TargetKey);
            command.Parameters.AddWithValue("device", batch.DeviceId);
            command.Parameters.AddWithValue("now", clock.GetUtcNow());
            foreach (var (name, value) in parameters)
            {
                command.Parameters.AddWithValue(name, value);
            }
            return command;
        }
    }
}
