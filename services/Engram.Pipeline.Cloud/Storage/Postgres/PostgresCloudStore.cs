using System.Data;
using Engram.Pipeline.Contracts;
using Npgsql;
using NpgsqlTypes;

namespace Engram.Pipeline.Cloud.Storage.Postgres;

/// <summary>
/// The cloud log in PostgreSQL. Locks are always taken device row first, then the target's counter
/// row, so concurrent batches cannot deadlock; the counter row stays locked until commit, so a
/// target's rows become visible in seq order and a reader never sees seq k+1 before seq k.
/// </summary>
public sealed class PostgresCloudStore(NpgsqlDataSource dataSource) : ICloudStore
{
    public async Task<IPushTransaction> BeginPushAsync(string targetKey, string deviceId, CancellationToken ct)
    {
        var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            var transaction = await connection.BeginTransactionAsync(ct);
            var push = new PushTransaction(connection, transaction, targetKey, deviceId);
            await push.LockDeviceAsync(ct);
            return push;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async Task<IReadOnlyList<CloudMutation>> ReadAfterAsync(PullMutations request, int limit, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT cloud_seq, device_id, local_seq, entity, op, entity_key,
                   CASE WHEN device_id = @device THEN '' ELSE payload::text END, occurred_at
            FROM cloud_mutations
            -- Seqs are dense (1..head), so the page is the range (after, after + limit]: bounding it keeps the
            -- scan to one page even when the planner's statistics lag a fast-growing log.
            WHERE target_key = @target AND cloud_seq > @after AND cloud_seq <= @after + @limit
            ORDER BY cloud_seq
            LIMIT @limit
            """);
        command.Parameters.AddWithValue("target", request.TargetKey);
        command.Parameters.AddWithValue("device", request.DeviceId);
        command.Parameters.AddWithValue("after", request.AfterSeq);
        command.Parameters.AddWithValue("limit", limit);
        var rows = new List<CloudMutation>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            rows.Add(new CloudMutation
            {
                CloudSeq = reader.GetInt64(0),
                DeviceId = reader.GetString(1),
                LocalSeq = reader.GetInt64(2),
                Entity = reader.GetString(3),
                Op = reader.GetString(4),
                EntityKey = reader.GetString(5),
                Payload = reader.GetString(6),
                OccurredAt = reader.GetFieldValue<DateTimeOffset>(7),
            });
        }
        return rows;
    }

    public async Task<long> HeadAsync(string targetKey, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT head FROM cloud_targets WHERE target_key = @target");
        command.Parameters.AddWithValue("target", targetKey);
        return await command.ExecuteScalarAsync(ct) as long? ?? 0;
    }

    public async Task<bool> IsGrantedAsync(string targetKey, string deviceId, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            "SELECT EXISTS (SELECT 1 FROM cloud_device_grants WHERE target_key = @target AND device_id = @device)");
        command.Parameters.AddWithValue("target", targetKey);
        command.Parameters.AddWithValue("device", deviceId);
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private sealed class PushTransaction(NpgsqlConnection connection, NpgsqlTransaction transaction, string target, string device)
        : IPushTransaction
    {
        public long HighWaterMark { get; private set; }

        public async Task LockDeviceAsync(CancellationToken ct)
        {
            const string lockSql = """
                SELECT last_local_seq FROM cloud_devices
                WHERE target_key = @target AND device_id = @device
                FOR UPDATE
                """;
            if (await ScalarAsync(lockSql, ct) is long existing)
            {
                HighWaterMark = existing;
                return;
            }
            await ScalarAsync("""
                INSERT INTO cloud_targets (target_key) VALUES (@target) ON CONFLICT DO NOTHING;
                INSERT INTO cloud_devices (target_key, device_id) VALUES (@target, @device) ON CONFLICT DO NOTHING;
                """, ct);
            HighWaterMark = (long)(await ScalarAsync(lockSql, ct))!;
        }

        public async Task<IReadOnlyList<StoredAnswer>> FindAnswersAsync(IReadOnlyList<(Mutation Mutation, bool Valid)> duplicates, CancellationToken ct)
        {
            await using var command = Command("""
                SELECT d.local_seq, m.cloud_seq,
                       COALESCE(m.entity = d.entity AND m.op = d.op AND m.entity_key = d.entity_key
                                AND m.payload = d.payload::jsonb, false),
                       r.reason, r.detail
                FROM unnest(@seqs, @entities, @ops, @keys, @payloads) AS d (local_seq, entity, op, entity_key, payload)
                LEFT JOIN cloud_mutations m
                       ON m.target_key = @target AND m.device_id = @device AND m.local_seq = d.local_seq
                LEFT JOIN cloud_rejections r
                       ON r.target_key = @target AND r.device_id = @device AND r.local_seq = d.local_seq
                """);
            command.Parameters.AddWithValue("seqs", duplicates.Select(d => d.Mutation.LocalSeq).ToArray());
            // An invalid mutation's text may be nothing PostgreSQL can take (a NUL, a lone surrogate, a payload
            // that is no jsonb): NULLs make it match no stored row, which is all it can do.
            command.Parameters.Add(Texts("entities", duplicates.Select(d => d.Valid ? d.Mutation.Entity : null)));
            command.Parameters.Add(Texts("ops", duplicates.Select(d => d.Valid ? d.Mutation.Op : null)));
            command.Parameters.Add(Texts("keys", duplicates.Select(d => d.Valid ? d.Mutation.EntityKey : null)));
            command.Parameters.Add(Texts("payloads", duplicates.Select(d => d.Valid ? d.Mutation.Payload : null)));
            var answers = new List<StoredAnswer>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                answers.Add(new StoredAnswer(reader.GetInt64(0),
                    reader.IsDBNull(1) ? null : reader.GetInt64(1),
                    reader.GetBoolean(2),
                    reader.IsDBNull(3) ? null : reader.GetString(3),
                    reader.IsDBNull(4) ? null : reader.GetString(4)));
            }
            return answers;
        }

        /// <summary>Seqs, insert, rejections, high-water mark and head in one round trip.</summary>
        public async Task<(IReadOnlyList<SeqMapping> Mappings, long Head)> AppendAsync(IReadOnlyList<Mutation> fresh,
            IReadOnlyList<MutationRejection> rejections, long newHighWaterMark, DateTimeOffset now, CancellationToken ct)
        {
            await using var batch = new NpgsqlBatch(connection, transaction);
            if (fresh.Count > 0)
            {
                batch.BatchCommands.Add(BatchCommand("""
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
                    ("now", now),
                    ("seqs", fresh.Select(m => m.LocalSeq).ToArray()),
                    ("entities", fresh.Select(m => m.Entity).ToArray()),
                    ("ops", fresh.Select(m => m.Op).ToArray()),
                    ("keys", fresh.Select(m => m.EntityKey).ToArray()),
                    ("payloads", fresh.Select(m => m.Payload).ToArray()),
                    ("occurred", fresh.Select(m => m.OccurredAt.ToUniversalTime()).ToArray())));
            }
            if (rejections.Count > 0)
            {
                batch.BatchCommands.Add(BatchCommand("""
                    INSERT INTO cloud_rejections (target_key, device_id, local_seq, reason, detail, rejected_at)
                    SELECT @target, @device, r.local_seq, r.reason, r.detail, @now
                    FROM unnest(@seqs, @reasons, @details) AS r (local_seq, reason, detail)
                    ON CONFLICT DO NOTHING
                    """,
                    ("now", now),
                    ("seqs", rejections.Select(r => r.LocalSeq).ToArray()),
                    ("reasons", rejections.Select(r => r.Reason).ToArray()),
                    ("details", rejections.Select(r => r.Detail).ToArray())));
            }
            batch.BatchCommands.Add(BatchCommand("""
                UPDATE cloud_devices SET last_local_seq = @mark
                WHERE target_key = @target AND device_id = @device AND last_local_seq < @mark
                """, ("mark", newHighWaterMark)));
            batch.BatchCommands.Add(BatchCommand("SELECT head FROM cloud_targets WHERE target_key = @target"));

            var mappings = new List<SeqMapping>(fresh.Count);
            long head = 0;
            await using var reader = await batch.ExecuteReaderAsync(ct);
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
            return (mappings, head);
        }

        public Task CommitAsync(CancellationToken ct) => transaction.CommitAsync(ct);

        public async ValueTask DisposeAsync()
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }

        private async Task<object?> ScalarAsync(string sql, CancellationToken ct)
        {
            await using var command = Command(sql);
            return await command.ExecuteScalarAsync(ct);
        }

        private NpgsqlCommand Command(string sql)
        {
            var command = new NpgsqlCommand(sql, connection, transaction);
            command.Parameters.AddWithValue("target", target);
            command.Parameters.AddWithValue("device", device);
            return command;
        }

        /// <summary>A text[] parameter that may hold NULLs.</summary>
        private static NpgsqlParameter Texts(string name, IEnumerable<string?> values) =>
            new(name, NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = values.ToArray() };

        private NpgsqlBatchCommand BatchCommand(string sql, params (string Name, object Value)[] parameters)
        {
            var command = new NpgsqlBatchCommand(sql);
            command.Parameters.AddWithValue("target", target);
            command.Parameters.AddWithValue("device", device);
            foreach (var (name, value) in parameters)
            {
                command.Parameters.AddWithValue(name, value);
            }
            return command;
        }
    }
}
