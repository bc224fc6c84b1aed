using System.Diagnostics;
using System.Text.Json;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.Simulation.EngramApp;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Engram.Pipeline.Benchmarks;

/// <summary>What each part can do on its own: the ceilings the pipeline is measured against.</summary>
public static class Ceilings
{
    /// <summary>
    /// C1: raw RabbitMQ.Client, persistent messages of one pipeline batch each, publisher confirms
    /// with many publishes in flight, a consumer acking manually. Returns messages/s.
    /// </summary>
    public static async Task<double> TransportAsync(Uri amqp, byte[] body, int messages)
    {
        var factory = new ConnectionFactory { Uri = amqp };
        await using var publisherConnection = await factory.CreateConnectionAsync();
        await using var consumerConnection = await factory.CreateConnectionAsync();
        await using var publisher = await publisherConnection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await using var subscriber = await consumerConnection.CreateChannelAsync();
        var queue = $"bench-transport-{Guid.NewGuid():N}";
        await publisher.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        await subscriber.BasicQosAsync(0, 64, false);

        var received = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = new AsyncEventingBasicConsumer(subscriber);
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            await subscriber.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            if (Interlocked.Increment(ref received) == messages)
            {
                done.TrySetResult();
            }
        };
        await subscriber.BasicConsumeAsync(queue, autoAck: false, consumer);

        var clock = Stopwatch.StartNew();
        using var window = new SemaphoreSlim(64);
        var publishes = new List<Task>(messages);
        for (var i = 0; i < messages; i++)
        {
            await window.WaitAsync();
            publishes.Add(Publish());
        }
        await Task.WhenAll(publishes);
        await done.Task.WaitAsync(TimeSpan.FromMinutes(5));
        var rate = messages / clock.Elapsed.TotalSeconds;
        await publisher.QueueDeleteAsync(queue);
        return rate;

        async Task Publish()
        {
            try
            {
                await publisher.BasicPublishAsync(string.Empty, queue, mandatory: false, new BasicProperties { Persistent = true }, body);
            }
            finally
            {
                window.Release();
            }
        }
    }

    /// <summary>A fresh cloud database with the schema and one empty target, as the ingest would leave it.</summary>
    public static async Task<(NpgsqlDataSource DataSource, string Target)> CreateTargetAsync(string cloudDb, string prefix)
    {
        var dataSource = NpgsqlDataSource.Create(cloudDb);
        await new PostgresSchema(dataSource, NullLogger<PostgresSchema>.Instance).EnsureCreatedAsync(CancellationToken.None);
        var target = $"{prefix}-{Guid.NewGuid():N}";
        await using var create = dataSource.CreateCommand("INSERT INTO cloud_targets (target_key) VALUES ($1)");
        create.Parameters.AddWithValue(target);
        await create.ExecuteNonQueryAsync();
        return (dataSource, target);
    }

    /// <summary>
    /// C2: raw Npgsql into <c>cloud_mutations</c>, batches of <paramref name="batch"/> rows with the
    /// counter-row update in the same transaction, by binary COPY or by one multi-row INSERT (unnest).
    /// Returns rows/s.
    /// </summary>
    public static async Task<double> DatabaseAsync(string cloudDb, IReadOnlyList<Mutation> rows, int batch, bool copy)
    {
        var (dataSource, target) = await CreateTargetAsync(cloudDb, copy ? "bench-copy" : "bench-unnest");
        await using var _ = dataSource;
        var clock = Stopwatch.StartNew();
        await AppendAsync(dataSource, target, "bench", rows.Chunk(batch), copy);
        return rows.Count / clock.Elapsed.TotalSeconds;
    }

    /// <summary>Appends each chunk to the target's log as <paramref name="deviceId"/>'s, one transaction per chunk with the counter row.</summary>
    public static async Task AppendAsync(NpgsqlDataSource dataSource, string target, string deviceId, IEnumerable<Mutation[]> chunks, bool copy)
    {
        foreach (var chunk in chunks)
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            long head;
            await using (var counter = new NpgsqlCommand("UPDATE cloud_targets SET head = head + $1 WHERE target_key = $2 RETURNING head", connection, transaction))
            {
                counter.Parameters.AddWithValue((long)chunk.Length);
                counter.Parameters.AddWithValue(target);
                head = (long)(await counter.ExecuteScalarAsync())!;
            }
            var first = head - chunk.Length + 1;
            if (copy)
            {
                await using var writer = await connection.BeginBinaryImportAsync(
                    "COPY cloud_mutations (target_key, cloud_seq, device_id, local_seq, entity, op, entity_key, payload, occurred_at, accepted_at) FROM STDIN (FORMAT BINARY)");
                for (var i = 0; i < chunk.Length; i++)
                {
                    var m = chunk[i];
                    await writer.StartRowAsync();
                    await writer.WriteAsync(target, NpgsqlDbType.Text);
                    await writer.WriteAsync(first + i, NpgsqlDbType.Bigint);
                    await writer.WriteAsync(deviceId, NpgsqlDbType.Text);
                    await writer.WriteAsync(first + i, NpgsqlDbType.Bigint);
                    await writer.WriteAsync(m.Entity, NpgsqlDbType.Text);
                    await writer.WriteAsync(m.Op, NpgsqlDbType.Text);
                    await writer.WriteAsync(m.EntityKey, NpgsqlDbType.Text);
                    await writer.WriteAsync(m.Payload, NpgsqlDbType.Jsonb);
                    await writer.WriteAsync(m.OccurredAt.ToUniversalTime(), NpgsqlDbType.TimestampTz);
                    await writer.WriteAsync(DateTimeOffset.UtcNow, NpgsqlDbType.TimestampTz);
                }
                await writer.CompleteAsync();
            }
            else
            {
                await using var insert = new NpgsqlCommand("""
                    INSERT INTO cloud_mutations (target_key, cloud_seq, device_id, local_seq, entity, op, entity_key, payload, occurred_at, accepted_at)
                    SELECT $1, $2 + d.ord - 1, $3, $2 + d.ord - 1, d.entity, d.op, d.entity_key, d.payload::jsonb, d.occurred_at, now()
                    FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[]) WITH ORDINALITY AS d (entity, op, entity_key, payload, occurred_at, ord)
                    """, connection, transaction);
                insert.Parameters.AddWithValue(target);
                insert.Parameters.AddWithValue(first);
                insert.Parameters.AddWithValue(deviceId);
                insert.Parameters.AddWithValue(chunk.Select(m => m.Entity).ToArray());
                insert.Parameters.AddWithValue(chunk.Select(m => m.Op).ToArray());
                insert.Parameters.AddWithValue(chunk.Select(m => m.EntityKey).ToArray());
                insert.Parameters.AddWithValue(chunk.Select(m => m.Payload).ToArray());
                insert.Parameters.AddWithValue(chunk.Select(m => m.OccurredAt.ToUniversalTime()).ToArray());
                await insert.ExecuteNonQueryAsync();
            }
            await transaction.CommitAsync();
        }
    }

    /// <summary>
    /// The raw read a pull is compared with: every row of the target's log through Npgsql, in
    /// pages of <paramref name="page"/> rows in seq order (the range after the last one read), every column read. Returns rows/s.
    /// </summary>
    public static async Task<double> ReadLogAsync(NpgsqlDataSource dataSource, string target, int page)
    {
        var clock = Stopwatch.StartNew();
        long after = 0, rows = 0;
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var select = new NpgsqlCommand("""
            SELECT cloud_seq, device_id, local_seq, entity, op, entity_key, payload::text, occurred_at
            FROM cloud_mutations WHERE target_key = $1 AND cloud_seq > $2 AND cloud_seq <= $2 + $3 ORDER BY cloud_seq
            """, connection);
        select.Parameters.AddWithValue(target);
        var afterParameter = select.Parameters.AddWithValue(after);
        select.Parameters.AddWithValue(page);
        while (true)
        {
            afterParameter.Value = after;
            var read = 0;
            await using (var reader = await select.ExecuteReaderAsync())
            {
                while (await reader.ReadAsync())
                {
                    after = reader.GetInt64(0);
                    _ = (reader.GetString(1), reader.GetInt64(2), reader.GetString(3), reader.GetString(4), reader.GetString(5), reader.GetString(6),
                        reader.GetFieldValue<DateTimeOffset>(7));
                    read++;
                }
            }
            rows += read;
            if (read < page)
            {
                return rows / clock.Elapsed.TotalSeconds;
            }
        }
    }

    /// <summary>
    /// C4: the device's raw apply, with no pipeline: pulled Engram mutations (<paramref name="pages"/>, as a pull hands
    /// them over) upserted or deleted into a new Engram database by hand-written SQL, its FTS triggers keeping search in
    /// step, one transaction per <paramref name="transactionRows"/> rows. No tombstone, deferral or outcome bookkeeping, and parents are not checked
    /// (foreign keys off): what SQLite alone can take in. Returns rows/s.
    /// </summary>
    public static async Task<double> ApplyAsync(string directory, IReadOnlyList<Mutation[]> pages, int transactionRows)
    {
        var path = Path.Combine(directory, $"c4-{Guid.NewGuid():N}.db");
        Payloads.NewEngram(path, "bench-apply", seed: 19).Dispose();
        await using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        await connection.OpenAsync();
        await using (var pragmas = connection.CreateCommand())
        {
            pragmas.CommandText = "PRAGMA foreign_keys = OFF; PRAGMA synchronous = NORMAL;";
            await pragmas.ExecuteNonQueryAsync();
        }
        var commands = new Dictionary<string, SqliteCommand>(StringComparer.Ordinal);
        long applied = 0;
        var clock = Stopwatch.StartNew();
        foreach (var page in pages.SelectMany(p => p.Chunk(transactionRows)))
        {
            await using var transaction = (SqliteTransaction)await connection.BeginTransactionAsync();
            foreach (var mutation in page)
            {
                using var json = JsonDocument.Parse(mutation.Payload);
                Apply(mutation, json.RootElement);
            }
            await transaction.CommitAsync();
            applied += page.Length;

            int Run(string sql, params (string Name, object? Value)[] values)
            {
                if (!commands.TryGetValue(sql, out var command))
                {
                    commands[sql] = command = connection.CreateCommand();
                    command.CommandText = sql;
                }
                command.Transaction = transaction;
                command.Parameters.Clear();
                foreach (var (name, value) in values)
                {
                    command.Parameters.AddWithValue(name, value ?? DBNull.Value);
                }
                return command.ExecuteNonQuery();
            }

            void Apply(Mutation mutation, JsonElement p)
            {
                object? F(string name) => !p.TryGetProperty(name, out var value) ? null : value.ValueKind switch
                {
                    JsonValueKind.String => value.GetString(),
                    JsonValueKind.Number => value.GetDouble(),
                    _ => null,
                };
                var key = ("$key", (object?)mutation.EntityKey);
                switch (mutation.Entity, mutation.Op)
                {
                    case ("session", "upsert"):
                        Run("""
                            INSERT INTO sessions (id, project, ownership_mode, directory, started_at, ended_at, summary)
                            VALUES ($key, $project, COALESCE($mode, 'shared'), COALESCE($directory, ''), COALESCE($started_at, datetime('now')), $ended_at, $summary)
                            ON CONFLICT (id) DO UPDATE SET project = excluded.project, directory = excluded.directory,
                                ended_at = COALESCE(excluded.ended_at, ended_at), summary = COALESCE(excluded.summary, summary)
                            """, key, ("$project", F("project")), ("$mode", F("ownership_mode")), ("$directory", F("directory")),
                            ("$started_at", F("started_at")), ("$ended_at", F("ended_at")), ("$summary", F("summary")));
                        break;
                    case ("session", "delete"):
                        Run("DELETE FROM user_prompts WHERE session_id = $key", key);
                        Run("DELETE FROM sessions WHERE id = $key", key);
                        break;
                    case ("observation", "upsert"):
                        (string, object?)[] values =
                        [
                            key, ("$session_id", F("session_id")), ("$type", F("type")), ("$title", F("title")), ("$content", F("content")),
                            ("$tool_name", F("tool_name")), ("$project", F("project")), ("$scope", F("scope")), ("$topic_key", F("topic_key")),
                            ("$revision", F("revision_count")), ("$duplicate", F("duplicate_count")), ("$created_at", F("created_at")),
                            ("$updated_at", F("updated_at")),
                        ];
                        if (Run("""
                            UPDATE observations SET session_id = $session_id, type = $type, title = $title, content = $content,
                                tool_name = $tool_name, project = $project, scope = $scope, topic_key = $topic_key,
                                revision_count = $revision, duplicate_count = $duplicate, updated_at = COALESCE($updated_at, updated_at), deleted_at = NULL
                            WHERE sync_id = $key
                            """, values) == 0)
                        {
                            Run("""
                                INSERT INTO observations (sync_id, session_id, type, title, content, tool_name, project, scope, topic_key,
                                    revision_count, duplicate_count, created_at, updated_at)
                                VALUES ($key, $session_id, $type, $title, $content, $tool_name, $project, $scope, $topic_key,
                                    $revision, $duplicate, COALESCE($created_at, datetime('now')), COALESCE($updated_at, datetime('now')))
                                """, values);
                        }
                        break;
                    case ("observation", "delete") when p.TryGetProperty("hard_delete", out var hard) && hard.ValueKind == JsonValueKind.True:
                        Run("DELETE FROM observations WHERE sync_id = $key", key);
                        break;
                    case ("observation", "delete"):
                        Run("UPDATE observations SET deleted_at = COALESCE($deleted_at, datetime('now')), updated_at = COALESCE($deleted_at, datetime('now')) WHERE sync_id = $key",
                            key, ("$deleted_at", F("deleted_at")));
                        break;
                    case ("prompt", "upsert"):
                        (string, object?)[] prompt = [key, ("$session_id", F("session_id")), ("$content", F("content")), ("$project", F("project")),
                            ("$created_at", F("created_at"))];
                        if (Run("UPDATE user_prompts SET session_id = $session_id, content = $content, project = $project WHERE sync_id = $key", prompt) == 0)
                        {
                            Run("""
                                INSERT INTO user_prompts (sync_id, session_id, content, project, created_at)
                                VALUES ($key, $session_id, $content, $project, COALESCE($created_at, datetime('now')))
                                """, prompt);
                        }
                        break;
                    case ("prompt", "delete"):
                        Run("DELETE FROM user_prompts WHERE sync_id = $key", key);
                        break;
                    case ("relation", _):
                        Run("""
                            INSERT INTO memory_relations (sync_id, source_id, target_id, relation, reason, confidence, judgment_status, session_id,
                                created_at, updated_at)
                            VALUES ($key, $source, $target, $relation, $reason, $confidence, $status, $session_id, $created_at, $updated_at)
                            ON CONFLICT (sync_id) DO UPDATE SET relation = excluded.relation, reason = excluded.reason,
                                confidence = excluded.confidence, judgment_status = excluded.judgment_status, updated_at = excluded.updated_at
                            """, key, ("$source", F("source_id")), ("$target", F("target_id")), ("$relation", F("relation")),
                            ("$reason", F("reason")), ("$confidence", F("confidence")), ("$status", F("judgment_status")),
                            ("$session_id", F("session_id")), ("$created_at", F("created_at")), ("$updated_at", F("updated_at")));
                        break;
                    default:
                        throw new InvalidOperationException($"no raw apply for {mutation.Entity} {mutation.Op}");
                }
            }
        }
        var rate = applied / clock.Elapsed.TotalSeconds;
        foreach (var command in commands.Values)
        {
            await command.DisposeAsync();
        }
        return rate;
    }

    /// <summary>
    /// C3: the SQLite work per mutation on a device, on a real Engram database: the Engram application's own writes
    /// (<see cref="EngramWorkload"/>, journaling as it goes), then per batch of up to <paramref name="batch"/> rows
    /// what the device does: the publisher's read of the pending rows and its sent mark, and the cursor service
    /// recording the acceptance (mapping, ack, cursor). Returns mutations/s.
    /// </summary>
    public static async Task<double> DeviceAsync(string directory, int mutations, int batch)
    {
        var path = Path.Combine(directory, $"c3-{Guid.NewGuid():N}.db");
        var runtime = DeviceServices.CreateRuntime($"Data Source={path}", new DeviceOptions { Id = "bench" }, new PublisherOptions(),
            new PullerOptions(), TimeProvider.System, NullLoggerFactory.Instance);
        using var engram = new EngramWriter(path, new Random(3));
        var workload = new EngramWorkload(3, "bench", [Payloads.Project], enrollAfter: 0);
        var journal = new JournalReader(runtime.Database);
        var target = new SyncTarget(Payloads.Project);
        var clock = Stopwatch.StartNew();
        long accepted = 0;
        while (accepted < mutations)
        {
            for (var journaled = 0; journaled < batch;)
            {
                journaled += workload.Next(engram).Count;
            }
            // What is still pending of those: Engram may have replaced an unsent session upsert meanwhile.
            while (await journal.ReadBatchAsync(target, afterSeq: null, batch, int.MaxValue, CancellationToken.None) is { } pending)
            {
                await journal.MarkSentAsync(pending, CancellationToken.None);
                await runtime.Cursor.ApplyAcceptedAsync(new PushAccepted
                {
                    TargetKey = target.Project, DeviceId = runtime.Identity.DeviceId, Rejected = [], Head = accepted + pending.Mutations.Count,
                    Mappings = pending.Mutations.Select(m => new SeqMapping { LocalSeq = m.LocalSeq, CloudSeq = ++accepted }).ToList(),
                }, CancellationToken.None);
            }
        }
        var rate = accepted / clock.Elapsed.TotalSeconds;
        SqliteConnection.ClearAllPools();
        return rate;
    }
}
