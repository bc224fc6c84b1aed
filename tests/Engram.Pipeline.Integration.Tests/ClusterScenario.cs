using System.Diagnostics;
using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// A private 3-node RabbitMQ cluster (infra/local/cluster-up.sh), the cloud database on the shared PostgreSQL,
/// and every host connected to a node of its own with the others to fail over to, which makes the pipeline's
/// queues quorum queues. The node leading <c>engram-push</c> is killed while devices push; nothing may be
/// lost, and what they record afterwards must still go through.
/// </summary>
[Collection(ServersFixture.Collection)]
public sealed class When_a_broker_node_dies_under_load(ServersFixture servers, ITestOutputHelper output)
{
    private const int Nodes = 3;
    private const int Devices = 4;
    private const int BeforeKill = 1_000;
    private const int AfterKill = 300;
    private static readonly TimeSpan _deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Quorum_queues_lose_nothing_and_the_pipeline_keeps_accepting()
    {
        await using var broker = await LocalRabbitCluster.StartAsync(Nodes);
        var name = ServersFixture.UniqueName("cluster");
        var cloudDb = await (await servers.GetAsync()).CreateDatabaseAsync(name);
        var work = Directory.CreateTempSubdirectory($"engram-{name}-");
        try
        {
            await using var pipeline = new PipelineCluster(new ClusterSettings(broker.RabbitMqUri, cloudDb, work.FullName)
            {
                IngestProcesses = 2,
                RabbitMqNodes = broker.Nodes.Select(node => node.Amqp).ToList(),
                // A send caught by the kill is given up, and a pull whose reply queue (MassTransit's temporary one)
                // died with its node asked again, after these rather than after 15 s and 30 s.
                DeviceSettings = new Dictionary<string, string?>
                {
                    ["Publisher:ResendAfter"] = "00:00:05",
                    ["Puller:RequestTimeout"] = "00:00:05",
                },
            });
            await RunAsync(broker, pipeline);
        }
        finally
        {
            await (await servers.GetAsync()).DropDatabaseAsync(name);
            work.Delete(recursive: true);
        }
    }

    private async Task RunAsync(LocalRabbitCluster broker, PipelineCluster pipeline)
    {
        await pipeline.StartIngestAsync(CancellationToken.None);
        for (var d = 0; d < Devices; d++)
        {
            await pipeline.StartDeviceAsync($"device-{d}", CancellationToken.None, seed: d);
        }
        string[] expected = [WireNames.PushQueue, WireNames.PullQueue, .. pipeline.Devices.Select(d => WireNames.DeviceQueue(d.DeviceId))];
        using (var queues = await broker.GetManagementAsync(broker.Nodes[0], "api/queues/%2F"))
        {
            var types = queues.RootElement.EnumerateArray().ToDictionary(q => q.GetProperty("name").GetString()!, q => q.GetProperty("type").GetString());
            Assert.All(expected, queue => Assert.Equal("quorum", types.GetValueOrDefault(queue)));
        }
        var victim = await LeaderAsync(broker, broker.Nodes[0], WireNames.PushQueue, notOn: null);
        // Both queues lead where the ingest that declared them first is connected. On RabbitMQ 3.10 a device still
        // connected whose pulls reach engram-pull while its leader is dead is refused until it restarts (README): this
        // scenario is about engram-push's leader, so engram-pull's leads elsewhere, as leader rebalancing would put it.
        var pullLeader = await LeaderAsync(broker, broker.Nodes[0], WireNames.PullQueue, notOn: null);
        if (pullLeader == victim)
        {
            pullLeader = broker.Nodes.First(node => node != victim);
            await broker.TransferLeadershipAsync(WireNames.PullQueue, pullLeader);
            pullLeader = await LeaderAsync(broker, broker.Nodes[0], WireNames.PullQueue, notOn: victim);
        }

        // Load: the devices record while they push, and the node goes once the cloud has taken a quarter of it, by
        // when every service has published to every queue (see the README on RabbitMQ 3.10's quorum queue clients).
        var workloads = pipeline.Devices.Select((d, i) => new EngramWorkload(i, d.DeviceId, [$"team-{i % 2}"], enrollAfter: 0)).ToList();
        var load = Task.WhenAll(pipeline.Devices.Select((d, i) => Task.Run(() => workloads[i].Journal(d.Engram, BeforeKill))));
        await Condition.WaitUntilAsync(async () => await AcceptedAsync(pipeline) >= Devices * BeforeKill / 4, _deadline, "a quarter of the load accepted");
        var acceptedAtKill = await AcceptedAsync(pipeline);
        var (pendingAtKill, _, _) = await pipeline.LagAsync(includeCursors: false, CancellationToken.None);
        var clock = Stopwatch.StartNew();
        await broker.KillAsync(victim);
        await load;

        // What devices record after the kill must be accepted too.
        var firstAfterKill = new List<long>();
        for (var d = 0; d < Devices; d++)
        {
            firstAfterKill.Add(workloads[d].Journal(pipeline.Devices[d].Engram, AfterKill)[0]);
        }
        async Task<long[]> AcceptedSinceKillAsync()
        {
            var accepted = new long[Devices];
            for (var d = 0; d < Devices; d++)
            {
                accepted[d] = await AckedSinceAsync(pipeline.Devices[d], firstAfterKill[d]);
            }
            return accepted;
        }
        await Condition.WaitUntilAsync(async () => (await AcceptedSinceKillAsync()).All(accepted => accepted > 0), _deadline,
            "every device has a mutation recorded after the kill accepted",
            async () => $"accepted per device: {string.Join(", ", await AcceptedSinceKillAsync())} of {AfterKill}");
        var recovered = clock.Elapsed;
        await pipeline.WaitUntilSettledAsync(_deadline, CancellationToken.None);
        var settled = clock.Elapsed;

        // I1-I4 hold: every journaled row still in the journal has its one cloud seq (Engram removes superseded ones).
        await PipelineWorld.AssertInvariantsAsync(pipeline);
        var newLeader = await LeaderAsync(broker, broker.Nodes.First(node => node != victim), WireNames.PushQueue, notOn: victim);

        output.WriteLine($"{Nodes}-node cluster, quorum queues; {pipeline.Ingest.Count} ingest hosts and {Devices} devices spread over the nodes.");
        output.WriteLine($"Killed {victim.Name} (engram-push's leader) with {acceptedAtKill} of {Devices * BeforeKill} mutations in the cloud " +
                         $"and {pendingAtKill} recorded but unanswered; engram-push's leader is now {newLeader.Name} " +
                         $"(engram-pull's led on {pullLeader.Name}).");
        output.WriteLine($"{Devices * AfterKill} more mutations recorded after the kill: every device had one accepted " +
                         $"{recovered.TotalSeconds:0.0} s after the kill; all {Devices * (BeforeKill + AfterKill)} accepted and pulled " +
                         $"everywhere {settled.TotalSeconds:0.0} s after it. I1-I6 PASS.");
    }

    /// <summary>Mutations the cloud has given a seq, over every target.</summary>
    private static async Task<long> AcceptedAsync(PipelineCluster pipeline)
    {
        long accepted = 0;
        foreach (var target in new[] { "team-0", "team-1" })
        {
            accepted += await pipeline.Cloud.HeadAsync(target, CancellationToken.None);
        }
        return accepted;
    }

    private static async Task<long> AckedSinceAsync(DeviceNode device, long firstSeq)
    {
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
        await connection.OpenAsync();
        await using var count = connection.CreateCommand();
        count.CommandText = "SELECT COUNT(*) FROM sync_mutations WHERE seq >= $first AND acked_at IS NOT NULL";
        count.Parameters.AddWithValue("$first", firstSeq);
        return (long)(await count.ExecuteScalarAsync())!;
    }

    /// <summary>The node a quorum queue's leader runs on, as <paramref name="asked"/> reports it, once it is not <paramref name="notOn"/>.</summary>
    private static async Task<RabbitNode> LeaderAsync(LocalRabbitCluster broker, RabbitNode asked, string queue, RabbitNode? notOn)
    {
        RabbitNode? leader = null;
        await Condition.WaitUntilAsync(async () =>
        {
            using var details = await broker.GetManagementAsync(asked, $"api/queues/%2F/{queue}");
            // Right after a node goes, the queue has no leader until the others elect one.
            leader = details.RootElement.TryGetProperty("leader", out var name) && name.ValueKind == JsonValueKind.String
                ? broker.Nodes.SingleOrDefault(node => node.Name == name.GetString())
                : null;
            return leader is not null && leader != notOn;
        }, _deadline, $"{queue} has a leader{(notOn is null ? "" : $" other than {notOn.Name}")}");
        return leader!;
    }
}
