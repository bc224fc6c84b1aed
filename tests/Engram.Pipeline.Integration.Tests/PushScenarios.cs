using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using MassTransit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace Engram.Pipeline.Integration.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_three_devices_push_through_three_competing_consumers(ServersFixture servers)
{
    [Theory]
    [InlineData(Backends.RabbitMq)]
    [InlineData(Backends.Embedded)]
    public async Task Every_mutation_gets_one_cloud_seq_in_device_order_and_the_devices_agree_with_the_cloud(string backend)
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "three_devices", ingestProcesses: 3, backend: backend);

        // A second project is enrolled while the devices sync: its backfill races the first project's traffic.
        var report = await SimulationRun.RunAsync(world.Cluster, new SimulationOptions(Devices: 3, MutationsPerDevice: 1_500, ["team", "team-late"]),
            progress: null, CancellationToken.None);

        await world.AssertInvariantsAsync();
        Assert.True(report.Mutations >= 4_500, $"{report.Mutations} journaled");
        await world.AssertEveryJournalRowMappedAsync(report.Mutations);
        // Every row the devices recorded a cloud seq for is in the cloud once, and nothing else is.
        Assert.Equal(await world.MappedAsync(), await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_every_batch_is_delivered_twice_and_out_of_order(ServersFixture servers)
{
    [Fact]
    public async Task The_cloud_keeps_one_row_per_mutation_in_device_order()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "replayed", ingestProcesses: 2);
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var device = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);
        var rabbit = world.Cluster.Settings.RabbitMqUri;

        // Besides the device's own publisher, a second sender replays the whole journal in random
        // batch boundaries, shuffled, every batch twice, with the device's queue as reply address.
        var workload = new EngramWorkload(3, "device-a", ["team"], enrollAfter: 0);
        var reader = new JournalReader(device.Runtime.Database);
        var journaled = 0;
        var replayer = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(rabbit));
        await replayer.StartAsync();
        try
        {
            var push = await replayer.GetSendEndpoint(new Uri($"queue:{WireNames.PushQueue}"));
            var random = new Random(11);
            for (var round = 0; round < 4; round++)
            {
                journaled += workload.Journal(device.Engram, 500).Count;
                if (await reader.ReadBatchAsync(Team, null, 10_000, int.MaxValue, CancellationToken.None) is not { } pending)
                {
                    continue;
                }
                var batches = Rechunk(pending, random).OrderBy(_ => random.Next()).ToList();
                foreach (var batch in batches.Concat(batches))
                {
                    await push.Send(batch, context => context.ResponseAddress = new Uri($"queue:{WireNames.DeviceQueue("device-a")}"));
                }
            }
            await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(2), CancellationToken.None);
        }
        finally
        {
            await replayer.StopAsync();
        }

        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(journaled);
        Assert.Equal(await world.MappedAsync(), await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

    private static readonly SyncTarget Team = new("team");

    /// <summary>Cuts a run of pending rows into batches of 1–120, each chained to the one before it.</summary>
    private static IEnumerable<PushMutations> Rechunk(PendingBatch pending, Random random)
    {
        var previous = pending.PreviousLocalSeq;
        for (var start = 0; start < pending.Mutations.Count;)
        {
            var size = Math.Min(random.Next(1, 121), pending.Mutations.Count - start);
            var mutations = pending.Mutations.Skip(start).Take(size).ToList();
            yield return new PushMutations { TargetKey = "team", DeviceId = "device-a", PreviousLocalSeq = previous, Mutations = mutations };
            previous = mutations[^1].LocalSeq;
            start += size;
        }
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_the_reply_is_lost_after_the_cloud_commits(ServersFixture servers)
{
    [Theory]
    [InlineData(Backends.RabbitMq)]
    [InlineData(Backends.Embedded)]
    public async Task The_resend_gets_the_same_cloud_seqs_and_adds_no_rows(string backend)
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "lost_reply", ingestProcesses: 1, backend: backend);
        await world.Cluster.StartIngestAsync(CancellationToken.None);

        // Engram journals 800 mutations while the device is down...
        var path = Path.Combine(world.WorkDirectory, "device-a.db");
        var database = new EngramDatabase($"Data Source={path}");
        database.Attach("device-a", TimeProvider.System);
        using (var engram = new EngramWriter(path, new Random(5)))
        {
            new EngramWorkload(5, "device-a", ["team"], enrollAfter: 0).Journal(engram, 800);
        }
        var journaled = await JournalRowsAsync(path);

        // ...the cloud commits its first 300 and the reply never leaves (the ingest process died before replying)...
        var first = await new JournalReader(database).ReadBatchAsync(new SyncTarget("team"), null, 300, int.MaxValue,
            CancellationToken.None);
        var ingestor = world.Cluster.Ingest[0].Services.GetRequiredService<PushIngestor>();
        var lostReply = await ingestor.IngestAsync(new PushMutations
        {
            TargetKey = "team", DeviceId = "device-a", PreviousLocalSeq = first!.PreviousLocalSeq, Mutations = first.Mutations,
        }, CancellationToken.None);
        var committed = Assert.IsType<PushOutcome.Accepted>(lostReply).Reply.Mappings;
        Assert.Equal(300, committed.Count);
        SqliteConnection.ClearAllPools();

        // ...then the publisher starts and sends everything unanswered, the first 300 included.
        await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await world.AssertInvariantsAsync();
        Assert.Equal(journaled, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly");
        await connection.OpenAsync();
        foreach (var mapping in committed)
        {
            await using var select = connection.CreateCommand();
            select.CommandText = $"SELECT cloud_seq FROM sync_seq_mapping WHERE local_seq = {mapping.LocalSeq}";
            Assert.Equal(mapping.CloudSeq, (long)(await select.ExecuteScalarAsync())!);
        }
    }

    internal static async Task<long> JournalRowsAsync(string path)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        await using var count = connection.CreateCommand();
        count.CommandText = "SELECT COUNT(*) FROM sync_mutations WHERE target_key = 'cloud' AND project = 'team'";
        return (long)(await count.ExecuteScalarAsync())!;
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_invalid_mutations_are_mixed_into_the_stream(ServersFixture servers)
{
    [Theory]
    [InlineData(Backends.RabbitMq)]
    [InlineData(Backends.Embedded)]
    public async Task They_are_rejected_with_reasons_and_everything_else_is_accepted(string backend)
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "invalid_mix", ingestProcesses: 2, backend: backend);
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var device = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);
        var workload = new EngramWorkload(9, "device-a", ["team"], enrollAfter: 0);

        // Engram, another version of it or a tool writes the journal, so nothing stops a bad row getting in.
        var bad = new (string Entity, string Op, string Key, string Payload, string Reason)[]
        {
            ("memory", "upsert", "m1", "{}", RejectionReasons.UnknownEntity),
            ("observation", "merge", "o1", "{}", RejectionReasons.UnknownOp),
            ("observation", "upsert", "o2", "{not json", RejectionReasons.PayloadNotJson),
            ("observation", "upsert", "o3", """{"s":"\u0000"}""", RejectionReasons.PayloadNotJson),
            ("observation", "upsert", "o4", $$"""{"content":"{{new string('x', 300_000)}}"}""", RejectionReasons.PayloadTooLarge),
            ("observation", "upsert", " ", "{}", RejectionReasons.InvalidEntityKey),
        };
        var expected = new Dictionary<long, string>();
        var journaled = 0;
        for (var round = 0; round < 5; round++)
        {
            journaled += workload.Journal(device.Engram, 200).Count;
            foreach (var row in bad)
            {
                expected[await InsertRawAsync(device.DatabasePath, row.Entity, row.Op, row.Key, row.Payload)] = row.Reason;
            }
        }
        journaled += workload.Journal(device.Engram, 200).Count;
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await world.AssertInvariantsAsync();
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
        await connection.OpenAsync();
        await using var select = connection.CreateCommand();
        // Quarantined in Engram's journal, the reason kept beside it.
        select.CommandText = """
            SELECT m.seq, r.reason FROM sync_mutations m JOIN pipeline_rejections r ON r.local_seq = m.seq
            WHERE m.disposition = 'quarantined'
            """;
        var rejected = new Dictionary<long, string>();
        await using (var reader = await select.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rejected[reader.GetInt64(0)] = reader.GetString(1);
            }
        }
        Assert.Equal(expected.OrderBy(e => e.Key), rejected.OrderBy(r => r.Key));
        await world.AssertEveryJournalRowMappedAsync(journaled);
        Assert.Equal(await world.MappedAsync(), await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

    private static async Task<long> InsertRawAsync(string path, string entity, string op, string key, string payload)
    {
        await using var connection = new SqliteConnection($"Data Source={path}");
        await connection.OpenAsync();
        await using var insert = connection.CreateCommand();
        insert.CommandText = """
            INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, project)
            VALUES ('cloud', $entity, $key, $op, $payload, 'team')
            RETURNING seq
            """;
        insert.Parameters.AddWithValue("$entity", entity);
        insert.Parameters.AddWithValue("$key", key);
        insert.Parameters.AddWithValue("$op", op);
        insert.Parameters.AddWithValue("$payload", payload);
        return (long)(await insert.ExecuteScalarAsync())!;
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_two_targets_are_pushed_concurrently(ServersFixture servers)
{
    [Theory]
    [InlineData(Backends.RabbitMq)]
    [InlineData(Backends.Embedded)]
    public async Task Each_targets_seqs_are_one_to_head(string backend)
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "two_targets", ingestProcesses: 2, backend: backend);
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var devices = new[]
        {
            await world.Cluster.StartDeviceAsync("alpha-1", CancellationToken.None, seed: 20),
            await world.Cluster.StartDeviceAsync("alpha-2", CancellationToken.None, seed: 21),
            await world.Cluster.StartDeviceAsync("beta-1", CancellationToken.None, seed: 22),
            await world.Cluster.StartDeviceAsync("beta-2", CancellationToken.None, seed: 23),
        };

        // Each user works in one project; both projects are pushed at once, each through its own chain of seqs.
        var journaled = await Task.WhenAll(devices.Select((device, i) => Task.Run(() =>
            new EngramWorkload(20 + i, device.DeviceId, [Project(device)], enrollAfter: 0).Journal(device.Engram, 1_500).Count)));
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(2), CancellationToken.None);

        await world.AssertInvariantsAsync();
        foreach (var project in new[] { "alpha", "beta" })
        {
            await world.AssertEveryJournalRowMappedAsync(devices.Select((d, i) => Project(d) == project ? journaled[i] : 0).Sum(), project);
            Assert.Equal(await world.MappedAsync(project),
                await world.CloudScalarAsync($"SELECT head FROM cloud_targets WHERE target_key = '{project}'"));
        }
    }

    private static string Project(DeviceNode device) => device.DeviceId.Split('-')[0];
}

[Collection(ServersFixture.Collection)]
public sealed class When_sent_batches_are_lost_before_the_cloud_sees_them(ServersFixture servers)
{
    [Fact]
    public async Task The_publisher_sends_them_again_after_its_timeout()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "lost_batches", ingestProcesses: 1,
            new Dictionary<string, string?> { ["Publisher:ResendAfter"] = "00:00:02" });
        var device = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);

        // With no ingest running, the batches wait in engram-push; then the broker loses them.
        var seqs = new EngramWorkload(21, "device-a", ["team"], enrollAfter: 0).Journal(device.Engram, 1_000);
        var journaled = await When_the_reply_is_lost_after_the_cloud_commits.JournalRowsAsync(device.DatabasePath);
        var window = device.Runtime.Targets.Window("team");
        // Rows Engram removed after they were sent (superseded session upserts) stay in flight too.
        await Condition.WaitUntilAsync(() => window.Mutations >= journaled, TimeSpan.FromSeconds(30), "the whole journal sent and in flight",
            TimeSpan.FromMilliseconds(20));
        // The batches were waiting, and by the time the management API counts them (its figures lag by
        // seconds) the publisher may have sent them again: all of them are lost.
        Assert.True(await world.PurgeQueueAsync(WireNames.PushQueue) >= 1);

        await world.Cluster.StartIngestAsync(CancellationToken.None);
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(seqs.Count);
        Assert.Equal(await world.MappedAsync(), await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }
}
