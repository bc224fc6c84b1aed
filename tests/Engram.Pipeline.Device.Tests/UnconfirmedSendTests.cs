using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using MassTransit;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engram.Pipeline.Device.Tests;

/// <summary>
/// A send whose connection dies can wait for the broker's confirm for ever (the RabbitMQ client does not always
/// notice). Here the first push and the first pull never complete; the device must give up on them and go on.
/// </summary>
public sealed class When_the_broker_never_confirms_a_send
{
    [Fact]
    public async Task The_publisher_and_the_puller_give_up_on_it_and_send_again()
    {
        var directory = Directory.CreateTempSubdirectory("engram-unconfirmed-");
        var pushes = 0;
        var pulls = 0;
        var hanging = new HashSet<string>();
        var bus = Bus.Factory.CreateUsingInMemory(cfg =>
        {
            cfg.ConfigureSend(send => send.UseExecuteAsync(async context =>
            {
                var queue = context.DestinationAddress!.AbsolutePath.Trim('/');
                bool first;
                lock (hanging)
                {
                    first = hanging.Add(queue);
                }
                if (first && queue is WireNames.PushQueue or WireNames.PullQueue)
                {
                    await Task.Delay(Timeout.Infinite, context.CancellationToken);
                }
            }));
            cfg.ReceiveEndpoint(WireNames.PushQueue, e => e.Handler<PushMutations>(_ =>
            {
                Interlocked.Increment(ref pushes);
                return Task.CompletedTask;
            }));
            cfg.ReceiveEndpoint(WireNames.PullQueue, e => e.Handler<PullMutations>(context =>
            {
                Interlocked.Increment(ref pulls);
                return context.RespondAsync(new MutationsPage { TargetKey = context.Message.TargetKey, Mutations = [], ThroughSeq = 0, Head = 0 });
            }));
        });
        await bus.StartAsync();
        var path = Path.Combine(directory.FullName, "engram.db");
        var runtime = DeviceServices.CreateRuntime($"Data Source={path}",
            new DeviceOptions { Id = "device-a", Target = "team" },
            new PublisherOptions { ResendAfter = TimeSpan.FromMilliseconds(300), PollInterval = TimeSpan.FromMilliseconds(100) },
            new PullerOptions { RequestTimeout = TimeSpan.FromSeconds(1), PollInterval = TimeSpan.FromMilliseconds(200) },
            TimeProvider.System, NullLoggerFactory.Instance);
        using var stop = new CancellationTokenSource();
        var running = runtime.RunAsync(bus, stop.Token);
        try
        {
            using (var engram = new EngramWriter(path))
            {
                engram.EnrollProject("team");
                engram.CreateSession("s1", "team", "/home/a/team");
            }
            await Condition.PollUntilAsync(() => Task.FromResult(Volatile.Read(ref pushes) > 0 && Volatile.Read(ref pulls) > 0),
                TimeSpan.FromSeconds(20));
        }
        finally
        {
            await stop.CancelAsync();
            await running;
            await bus.StopAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }

        Assert.True(pushes > 0 && pulls > 0, $"After their first sends hung: {pushes} pushes and {pulls} pulls arrived.");
    }
}
