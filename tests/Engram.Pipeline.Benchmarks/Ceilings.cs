using System.Diagnostics;
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
