using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation;
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

        var report = await SimulationRun.RunAsync(world.Cluster, new SimulationOptions(Devices: 3, MutationsPerDevice: 5_000),
            progress: null, CancellationToken.None);

        await world.AssertInvariantsAsync();
        Assert.Equal(15_000, report.Mutations);
        Assert.Equal(15_000, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
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
        var device = await world.Cluster.StartDeviceAsync("device-a", "team", CancellationToken.None);
        var rabbit = world.Cluster.Settings.RabbitMqUri;

        // Besides the device's own publisher, a second sender replays the whole journal in random
        // batch boundaries, shuffled, every batch twice, with the device's queue as reply address.
        var workload = new Workload("device-a", seed: 3);
        var replayer = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(rabbit));
        await replayer.StartAsync();
        try
        {
            var push = await replayer.GetSendEndpoint(new Uri($"queue:{WireNames.PushQueue}"));
            var random = new Random(11);
            for (var round = 0; round < 4; round++)
            {
                await device.Journal.RecordAsync(workload.Next(500), CancellationToken.None);
                var reader = new JournalReader(device.Runtime.Database, device.Runtime.Identity);
                if (await reader.ReadBatchAsync(null, 10_000, int.MaxValue, CancellationToken.None) is not { } pending)
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
        Assert.Equal(2_000, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

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

        // The device journals 800 mutations while its publisher is down...
        var path = Path.Combine(world.WorkDirectory, "device-a.db");
        var database = new DeviceDatabase($"Data Source={path}");
        var identity = new DeviceIdentity(database.Initialise("device-a", TimeProvider.System), "team");
        var journal = new DeviceJournal(database, identity, new Wakeup(TimeProvider.System), TimeProvider.System);
        await journal.RecordAsync(new Workload("device-a", seed: 5).Next(800), CancellationToken.None);

        // ...the cloud commits its first 300 and the reply never leaves (the ingest process died before replying)...
        var first = await new JournalReader(database, identity).ReadBatchAsync(null, 300, int.MaxValue, CancellationToken.None);
        var ingestor = world.Cluster.Ingest[0].Services.GetRequiredService<PushIngestor>();
        var lostReply = await ingestor.IngestAsync(new PushMutations
        {
            TargetKey = "team", DeviceId = "device-a", PreviousLocalSeq = first!.PreviousLocalSeq, Mutations = first.Mutations,
        }, CancellationToken.None);
        var committed = Assert.IsType<PushOutcome.Accepted>(lostReply).Reply.Mappings;
        Assert.Equal(300, committed.Count);
        SqliteConnection.ClearAllPools();

        // ...then the publisher starts and sends everything unanswered, the first 300 included.
        await world.Cluster.StartDeviceAsync("device-a", "team", CancellationToken.None);
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await world.AssertInvariantsAsync();
        Assert.Equal(800, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly");
        await connection.OpenAsync();
        foreach (var mapping in committed)
        {
            await using var select = connection.CreateCommand();
            select.CommandText = $"SELECT cloud_seq FROM sync_seq_mapping WHERE local_seq = {mapping.LocalSeq}";
            Assert.Equal(mapping.CloudSeq, (long)(await select.ExecuteScalarAsync())!);
        }
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
        var device = await world.Cluster.StartDeviceAsync("device-a", "team", CancellationToken.None);
        var workload = new Workload("device-a", seed: 9);

        // The Engram application writes the journal itself, so nothing stops a bad row getting in.
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
        for (var round = 0; round < 5; round++)
        {
            await device.Journal.RecordAsync(workload.Next(200), CancellationToken.None);
            foreach (var row in bad)
            {
                expected[await InsertRawAsync(device.DatabasePath, row.Entity, row.Op, row.Key, row.Payload)] = row.Reason;
            }
        }
        await device.Journal.RecordAsync(workload.Next(200), CancellationToken.None);
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await world.AssertInvariantsAsync();
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
        await connection.OpenAsync();
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT seq, reject_reason FROM sync_mutations WHERE rejected_at IS NOT NULL";
        var rejected = new Dictionary<long, string>();
        await using (var reader = await select.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rejected[reader.GetInt64(0)] = reader.GetString(1);
            }
        }
        Assert.Equal(expected.OrderBy(e => e.Key), rejected.OrderBy(r => r.Key));
        Assert.Equal(1_200, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

    private static async Task<long> InsertRawAsync(string path, string entity, string op, string key, string payload)
    {
        await using var connection = new SqliteConnection($"Data Source={path}");
        await connection.OpenAsync();
        await using var insert = connection.CreateCommand();
        insert.CommandText = """
            INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, occurred_at)
            VALUES ('team', $entity, $key, $op, $payload, 'local', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
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
            await world.Cluster.StartDeviceAsync("alpha-1", "alpha", CancellationToken.None),
            await world.Cluster.StartDeviceAsync("alpha-2", "alpha", CancellationToken.None),
            await world.Cluster.StartDeviceAsync("beta-1", "beta", CancellationToken.None),
            await world.Cluster.StartDeviceAsync("beta-2", "beta", CancellationToken.None),
        };

        await Task.WhenAll(devices.Select((device, i) => Task.Run(async () =>
        {
            var workload = new Workload(device.DeviceId, seed: 20 + i);
            for (var chunk = 0; chunk < 30; chunk++)
            {
                await device.Journal.RecordAsync(workload.Next(50), CancellationToken.None);
            }
        })));
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(2), CancellationToken.None);

        await world.AssertInvariantsAsync();
        Assert.Equal(3_000, await world.CloudScalarAsync("SELECT head FROM cloud_targets WHERE target_key = 'alpha'"));
        Assert.Equal(3_000, await world.CloudScalarAsync("SELECT head FROM cloud_targets WHERE target_key = 'beta'"));
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_sent_batches_are_lost_before_the_cloud_sees_them(ServersFixture servers)
{
    [Fact]
    public async Task The_publisher_sends_them_again_after_its_timeout()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "lost_batches", ingestProcesses: 1,
            new Dictionary<string, string?> { ["Publisher:ResendAfter"] = "00:00:02" });
        var device = await world.Cluster.StartDeviceAsync("device-a", "team", CancellationToken.None);

        // With no ingest running, the batches wait in engram-push; then the broker loses them.
        await device.Journal.RecordAsync(new Workload("device-a", seed: 21).Next(1_000), CancellationToken.None);
        var window = device.Runtime.Window;
        await Condition.WaitUntilAsync(() => window.Mutations == 1_000, TimeSpan.FromSeconds(30), "all 1,000 mutations sent and in flight",
            TimeSpan.FromMilliseconds(20));
        // Two batches of 500 were waiting, and by the time the management API counts them (its figures
        // lag by seconds) the publisher may have sent them again: all of them are lost.
        Assert.True(await world.PurgeQueueAsync(WireNames.PushQueue) >= 1);

        await world.Cluster.StartIngestAsync(CancellationToken.None);
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await world.AssertInvariantsAsync();
        Assert.Equal(1_000, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }
}
