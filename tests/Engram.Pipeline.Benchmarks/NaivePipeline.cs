using System.Diagnostics;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Journal;
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
/// B: the pipeline a user writes first. MassTransit, one message per mutation, one database
/// transaction per mutation on each side, one reply per mutation (32 requests outstanding).
/// Returns mutations/s and the per-mutation latency samples.
/// </summary>
public static class NaivePipeline
{
    public static async Task<(double Rate, List<double> Latencies)> RunAsync(Uri amqp, string cloudDb, string directory, IReadOnlyList<Mutation> rows)
    {
        var (dataSource, target) = await Ceilings.CreateTargetAsync(cloudDb, "naive");
        await using var _ = dataSource;
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(amqp);
            cfg.ReceiveEndpoint("bench-naive", e => e.Consumer(() => new NaiveConsumer(dataSource)));
        });
        await bus.StartAsync();
        var device = DeviceServices.CreateRuntime($"Data Source={Path.Combine(directory, $"naive-{Guid.NewGuid():N}.db")}",
            new DeviceOptions { Id = "naive", Target = target }, new PublisherOptions(), new PullerOptions(), TimeProvider.System,
            NullLoggerFactory.Instance);
        try
        {
            var client = bus.CreateRequestClient<NaiveMutation>(new Uri("queue:bench-naive"), RequestTimeout.After(s: 60));
            var latencies = new List<double>(rows.Count);
            using var window = new SemaphoreSlim(32);
            var clock = Stopwatch.StartNew();
            var requests = new List<Task>(rows.Count);
            foreach (var row in rows)
            {
                await window.WaitAsync();
                requests.Add(OneAsync(row));
            }
            await Task.WhenAll(requests);
            return (rows.Count / clock.Elapsed.TotalSeconds, latencies);

            async Task OneAsync(Mutation row)
            {
                try
                {
                    var started = Stopwatch.GetTimestamp();
                    var seq = (await device.Journal.RecordAsync([new NewMutation(row.Entity, row.Op, row.EntityKey, row.Payload)], CancellationToken.None))[0];
                    var reply = await client.GetResponse<NaiveAccepted>(new NaiveMutation(target, "naive", seq, row.Entity, row.Op, row.EntityKey, row.Payload, row.OccurredAt));
                    await device.Cursor.ApplyAcceptedAsync(new PushAccepted
                    {
                        TargetKey = target, DeviceId = "naive", Rejected = [], Head = reply.Message.Head,
                        Mappings = [new SeqMapping { LocalSeq = seq, CloudSeq = reply.Message.CloudSeq }],
                    }, CancellationToken.None);
                    lock (latencies)
                    {
                        latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
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
}
