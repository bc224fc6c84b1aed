using System.Collections.Concurrent;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Simulation.Verification;
using Engram.Pipeline.Testing;
using MassTransit;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Integration.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_every_push_accepted_is_delivered_twice_and_shuffled(ServersFixture servers)
{
    [Fact]
    public async Task The_device_ends_in_the_same_state_as_with_each_answer_once_in_order()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "shuffled_replies", ingestProcesses: 2);
        await world.Cluster.StartIngestAsync(CancellationToken.None);

        // Two copies of one Engram database: same memories, same journal.
        var inOrder = Open(Path.Combine(world.WorkDirectory, "in-order.db"));
        using (var engram = new EngramWriter(inOrder.Database.Path, new Random(13)))
        {
            new EngramWorkload(13, "device-a", [Team.Project], enrollAfter: 0).Journal(engram, 1_500);
        }
        var shuffledPath = Path.Combine(world.WorkDirectory, "shuffled.db");
        await ExecuteAsync(inOrder.Database.Path, $"VACUUM INTO '{shuffledPath}'");
        var shuffled = Open(shuffledPath);

        // The real cloud answers every batch; the answers are collected instead of delivered.
        var answers = new ConcurrentQueue<PushAccepted>();
        var capture = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(world.Cluster.Settings.RabbitMqUri);
            cfg.ReceiveEndpoint("capture-replies", e =>
            {
                e.ConfigureConsumeTopology = false;
                e.Handler<PushAccepted>(context =>
                {
                    answers.Enqueue(context.Message);
                    return Task.CompletedTask;
                });
            });
        });
        await capture.StartAsync();
        try
        {
            // One batch at a time, as the chain requires when nobody resends an overtaking batch.
            var push = await capture.GetSendEndpoint(new Uri($"queue:{WireNames.PushQueue}"));
            long? after = null;
            while (await inOrder.Reader.ReadBatchAsync(Team, after, 100, int.MaxValue, CancellationToken.None) is { } batch)
            {
                await push.Send(new PushMutations
                {
                    TargetKey = "team", DeviceId = "device-a", PreviousLocalSeq = batch.PreviousLocalSeq, Mutations = batch.Mutations,
                }, context => context.ResponseAddress = new Uri("queue:capture-replies"));
                await Condition.WaitUntilAsync(
                    () => answers.Any(a => a.Mappings.Any(m => m.LocalSeq == batch.LastSeq) || a.Rejected.Any(r => r.LocalSeq == batch.LastSeq)),
                    TimeSpan.FromMinutes(1), $"the answer to the batch ending at local seq {batch.LastSeq}", TimeSpan.FromMilliseconds(20));
                after = batch.LastSeq;
            }
        }
        finally
        {
            await capture.StopAsync();
        }

        foreach (var answer in answers)
        {
            await inOrder.Cursor.ApplyAcceptedAsync(answer, CancellationToken.None);
        }
        var random = new Random(17);
        foreach (var answer in answers.Concat(answers).OrderBy(_ => random.Next()))
        {
            await shuffled.Cursor.ApplyAcceptedAsync(answer, CancellationToken.None);
        }

        Assert.Equal(await DeviceDump.ReadAsync(inOrder.Database.Path), await DeviceDump.ReadAsync(shuffledPath));
        var verdicts = await InvariantChecker.CheckPushAsync(world.Cluster.Cloud, [new DeviceDatabaseRef("device-a", shuffledPath, [Team.Project])],
            CancellationToken.None);
        Assert.True(verdicts.All(v => v.Pass), string.Join('\n', verdicts.Select(v => $"{v.Name}: {v.Detail}")));
    }

    private static readonly SyncTarget Team = new("team");

    private sealed record DeviceCopy(EngramDatabase Database, JournalReader Reader, CursorService Cursor);

    private static DeviceCopy Open(string path)
    {
        var database = new EngramDatabase($"Data Source={path}");
        var identity = new DeviceIdentity(database.Attach("device-a", TimeProvider.System));
        return new DeviceCopy(database, new JournalReader(database), new CursorService(database, identity, TimeProvider.System));
    }

    private static async Task ExecuteAsync(string path, string sql)
    {
        await using var connection = new SqliteConnection($"Data Source={path}");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync();
    }
}
