using System.Collections.Concurrent;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Device.Tests.ApplyTests;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using MassTransit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engram.Pipeline.Device.Tests;

/// <summary>
/// A device catching up over several pages asks for the next page while one applies, so the cloud's read overlaps the
/// apply. Here Engram holds the write lock when the log grows: the next page cannot apply, yet the one after it is asked for.
/// </summary>
public sealed class When_a_device_catches_up_over_several_pages
{
    private const int Rows = 2_500;
    private const int PageSize = 1_000;

    [Fact]
    public async Task It_asks_for_the_next_page_while_one_applies_and_takes_in_every_row_once()
    {
        var directory = Directory.CreateTempSubdirectory("engram-pull-ahead-");
        var log = AnotherDevicesLog();
        // The log shows its first row (the session) until Engram holds the write lock; then all of it.
        var visible = 1;
        var asked = new ConcurrentQueue<long>();
        var bus = Bus.Factory.CreateUsingInMemory(cfg => cfg.ReceiveEndpoint(WireNames.PullQueue, e => e.Handler<PullMutations>(context =>
        {
            asked.Enqueue(context.Message.AfterSeq);
            var head = Volatile.Read(ref visible);
            var rows = log.Where(row => row.CloudSeq > context.Message.AfterSeq && row.CloudSeq <= Math.Min(head, context.Message.AfterSeq + context.Message.Limit))
                .ToList();
            return context.RespondAsync(new MutationsPage
            {
                TargetKey = context.Message.TargetKey, Mutations = rows, ThroughSeq = rows.Count > 0 ? rows[^1].CloudSeq : context.Message.AfterSeq, Head = head,
            });
        })));
        await bus.StartAsync();
        var path = Path.Combine(directory.FullName, "engram.db");
        // No polls: after the first, the device pulls only when told the log grew, so no pull of the short log can be
        // waiting for the lock when the log grows.
        var runtime = DeviceServices.CreateRuntime($"Data Source={path};Default Timeout=30",
            new DeviceOptions { Id = "device-b", Target = "team" }, new PublisherOptions(),
            new PullerOptions { PageSize = PageSize, PollInterval = TimeSpan.FromHours(1) },
            TimeProvider.System, NullLoggerFactory.Instance);
        var endpoint = bus.ConnectReceiveEndpoint(runtime.QueueName, runtime.ConfigureEndpoint);
        await endpoint.Ready;
        using var stop = new CancellationTokenSource();
        var running = runtime.RunAsync(bus, stop.Token);
        try
        {
            using (var engram = new EngramWriter(path))
            {
                engram.EnrollProject("team");
            }
            await Condition.WaitUntilAsync(() => Cursor(path) == 1, TimeSpan.FromSeconds(20), "the short log taken in");

            long cursorWhenAsked;
            await using (var engramsWrite = new SqliteConnection($"Data Source={path};Pooling=False"))
            {
                await engramsWrite.OpenAsync();
                using var held = engramsWrite.BeginTransaction(deferred: false);
                Volatile.Write(ref visible, Rows);
                await bus.Publish(new TargetAdvanced { TargetKey = "team", Head = Rows });
                await Condition.WaitUntilAsync(() => asked.Contains(1 + PageSize), TimeSpan.FromSeconds(20),
                    "the page after the next asked for while the next waits for Engram's lock");
                cursorWhenAsked = Cursor(path);
                held.Rollback();
            }
            await Condition.WaitUntilAsync(() => Cursor(path) == Rows, TimeSpan.FromSeconds(30), $"the cursor at {Rows}");

            Assert.Equal(1, cursorWhenAsked);
            using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
            connection.Open();
            using var counts = connection.CreateCommand();
            counts.CommandText = """
                SELECT (SELECT COUNT(*) FROM pipeline_applied WHERE outcome = 'applied') || '|' || (SELECT COUNT(*) FROM pipeline_applied)
                    || '|' || (SELECT COUNT(*) FROM observations)
                """;
            Assert.Equal($"{Rows}|{Rows}|{Rows - 1}", counts.ExecuteScalar());
        }
        finally
        {
            await stop.CancelAsync();
            await running;
            await endpoint.StopAsync();
            await bus.StopAsync();
            SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }
    }

    /// <summary>device-a's session, then its observations in that session.</summary>
    private static List<CloudMutation> AnotherDevicesLog() =>
        Enumerable.Range(1, Rows).Select(seq => new CloudMutation
        {
            CloudSeq = seq, DeviceId = "device-a", LocalSeq = seq, Entity = seq == 1 ? "session" : "observation", Op = "upsert",
            EntityKey = seq == 1 ? "s1" : $"obs-{seq:x16}",
            Payload = seq == 1 ? Payload.Session("s1") : Payload.Observation($"obs-{seq:x16}", "s1", $"note {seq} about multi-stage builds"),
            OccurredAt = DateTimeOffset.UnixEpoch.AddSeconds(seq),
        }).ToList();

    private static long Cursor(string path)
    {
        using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var read = connection.CreateCommand();
        read.CommandText = "SELECT unified_cursor FROM sync_state WHERE target_key = 'cloud:team'";
        return read.ExecuteScalar() as long? ?? 0;
    }
}
