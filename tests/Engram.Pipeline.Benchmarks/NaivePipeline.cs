using System.Diagnostics;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EngramApp;
using MassTransit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Engram.Pipeline.Benchmarks;

/// <summary>B's message: one mutation.</summary>
public sealed record NaiveMutation(string TargetKey, string DeviceId, long LocalSeq, string Entity, string Op, string EntityKey, string Payload, DateTimeOffset OccurredAt);

/// <summary>B's reply: one mapping.</summary>
public sealed record NaiveAccepted(long LocalSeq, long CloudSeq, long Head);

/// <summary>B's cloud side: one transaction per mutation.</summary>
public sealed class NaiveConsumer(NpgsqlDataSource dataSource) : IConsumer<NaiveMutation>
{
    public async Task Consume(ConsumeContext<NaiveMutation> context)
    {
        var m = context.Message;
        await using var connection = await dataSource.OpenConnectionAsync(context.CancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(context.CancellationToken);
        await using var insert = new NpgsqlCommand("""
            WITH counter AS (UPDATE cloud_targets SET head = head + 1 WHERE target_key = $1 RETURNING head)
            INSERT INTO cloud_mutations (target_key, cloud_seq, device_id, local_seq, entity, op, entity_key, payload, occurred_at, accepted_at)
            SELECT $1, counter.head, $2, $3, $4, $5, $6, $7::jsonb, $8, now() FROM counter
            RETURNING cloud_seq
            """, connection, transaction);
        insert.Parameters.AddWithValue(m.TargetKey);
        insert.Parameters.AddWithValue(m.DeviceId);
        insert.Parameters.AddWithValue(m.LocalSeq);
        insert.Parameters.AddWithValue(m.Entity);
        insert.Parameters.AddWithValue(m.Op);
        insert.Parameters.AddWithValue(m.EntityKey);
        insert.Parameters.AddWithValue(m.Payload);
        insert.Parameters.AddWithValue(m.OccurredAt.ToUniversalTime());
        var cloudSeq = (long)(await insert.ExecuteScalarAsync(context.CancellationToken))!;
        await transaction.CommitAsync(context.CancellationToken);
        await context.RespondAsync(new NaiveAccepted(m.LocalSeq, cloudSeq, cloudSeq));
    }
}

/// <summary>
/// B: the pipeline a user writes first. The Engram application journals as it always does; the device reads each
/// journaled row and sends it with MassTransit, one message per mutation, one database transaction per mutation on
/// each side, one reply per mutation (32 requests outstanding), recorded by the cursor service. Returns mutations/s
/// and the per-mutation latency samples, journal commit to acceptance recorded.
/// </summary>
public static class NaivePipeline
{
    public static async Task<(double Rate, List<double> Latencies)> RunAsync(Uri amqp, string cloudDb, string directory, int mutations, int seed)
    {
        var (dataSource, target) = await Ceilings.CreateTargetAsync(cloudDb, "naive");
        await using var _ = dataSource;
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(amqp);
            cfg.ReceiveEndpoint("bench-naive", e => e.Consumer(() => new NaiveConsumer(dataSource)));
        });
        await bus.StartAsync();
        var path = Path.Combine(directory, $"naive-{Guid.NewGuid():N}.db");
        var device = DeviceServices.CreateRuntime($"Data Source={path}", new DeviceOptions { Id = "naive" }, new PublisherOptions(),
            new PullerOptions(), TimeProvider.System, NullLoggerFactory.Instance);
        try
        {
            using var engram = new EngramWriter(path, new Random(seed));
            var workload = new EngramWorkload(seed, "naive", [target], enrollAfter: 0);
            var client = bus.CreateRequestClient<NaiveMutation>(new Uri("queue:bench-naive"), RequestTimeout.After(s: 60));
            var latencies = new List<double>(mutations);
            var sent = 0;
            using var window = new SemaphoreSlim(32);
            var clock = Stopwatch.StartNew();
            var requests = new List<Task>(mutations);
            for (var journaled = 0; journaled < mutations;)
            {
                var seqs = workload.Next(engram);
                var committed = Stopwatch.GetTimestamp();
                journaled += seqs.Count;
                foreach (var seq in seqs)
                {
                    await window.WaitAsync();
                    requests.Add(OneAsync(seq, committed));
                }
            }
            await Task.WhenAll(requests);
            return (sent / clock.Elapsed.TotalSeconds, latencies);

            async Task OneAsync(long seq, long committed)
            {
                try
                {
                    // A session upsert Engram has replaced since is gone: never sent, as the real device never sends it.
                    if (await ReadAsync(device.Database, seq) is not { } row)
                    {
                        return;
                    }
                    var reply = await client.GetResponse<NaiveAccepted>(
                        new NaiveMutation(target, "naive", seq, row.Entity, row.Op, row.EntityKey, row.Payload, row.OccurredAt));
                    await device.Cursor.ApplyAcceptedAsync(new PushAccepted
                    {
                        TargetKey = target, DeviceId = "naive", Rejected = [], Head = reply.Message.Head,
                        Mappings = [new SeqMapping { LocalSeq = seq, CloudSeq = reply.Message.CloudSeq }],
                    }, CancellationToken.None);
                    Interlocked.Increment(ref sent);
                    lock (latencies)
                    {
                        latencies.Add(Stopwatch.GetElapsedTime(committed).TotalMilliseconds);
                    }
                }
                finally
                {
                    window.Release();
                }
            }
        }
        finally
        {
            await bus.StopAsync();
            SqliteConnection.ClearAllPools();
        }
    }

    /// <summary>The journal row <paramref name="seq"/>, or null when Engram has removed it.</summary>
    private static async Task<Mutation?> ReadAsync(EngramDatabase database, long seq)
    {
        await using var connection = await database.OpenAsync(CancellationToken.None);
        await using var select = connection.CreateCommand();
        select.CommandText = $"SELECT {Payloads.MutationColumns} FROM sync_mutations WHERE target_key = 'cloud' AND seq = $seq";
        select.Parameters.AddWithValue("$seq", seq);
        await using var reader = await select.ExecuteReaderAsync();
        return await reader.ReadAsync() ? Payloads.Read(reader, seq) : null;
    }
}
