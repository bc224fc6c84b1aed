using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using MassTransit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engram.Pipeline.Device.Tests;

/// <summary>
/// The Engram application journals a change in its own process; the device notices the commit, not its next poll of
/// the journal. Here the publisher polls once an hour, so only the commit can wake it.
/// </summary>
public sealed class When_Engram_commits_a_change
{
    [Fact]
    public async Task The_publisher_sends_it_without_waiting_for_its_poll()
    {
        var directory = Directory.CreateTempSubdirectory("engram-commit-watch-");
        var pushed = new List<long>();
        var bus = Bus.Factory.CreateUsingInMemory(cfg =>
        {
            cfg.ReceiveEndpoint(WireNames.PushQueue, e => e.Handler<PushMutations>(context =>
            {
                lock (pushed)
                {
                    pushed.AddRange(context.Message.Mutations.Select(m => m.LocalSeq));
                }
                return Task.CompletedTask;
            }));
            cfg.ReceiveEndpoint(WireNames.PullQueue, e => e.Handler<PullMutations>(context =>
                context.RespondAsync(new MutationsPage { TargetKey = context.Message.TargetKey, Mutations = [], ThroughSeq = 0, Head = 0 })));
        });
        await bus.StartAsync();
        var path = Path.Combine(directory.FullName, "engram.db");
        var runtime = DeviceServices.CreateRuntime($"Data Source={path}", new DeviceOptions { Id = "device-a", Target = "team" },
            new PublisherOptions { PollInterval = TimeSpan.FromHours(1) }, new PullerOptions(), TimeProvider.System, NullLoggerFactory.Instance);
        using var stop = new CancellationTokenSource();
        var running = runtime.RunAsync(bus, stop.Token);
        try
        {
            using var engram = new EngramWriter(path);
            engram.EnrollProject("team");
            await Condition.WaitUntilAsync(() => runtime.Lease.IsHeld, TimeSpan.FromSeconds(20), "the sync lease held");
            var seqs = engram.CreateSession("s1", "team", "/home/a/team");

            await Condition.WaitUntilAsync(() => { lock (pushed) { return seqs.All(pushed.Contains); } }, TimeSpan.FromSeconds(20),
                $"local seqs {string.Join(", ", seqs)} pushed");
        }
        finally
        {
            await stop.CancelAsync();
            await running;
            await bus.StopAsync();
            SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }
    }
}
