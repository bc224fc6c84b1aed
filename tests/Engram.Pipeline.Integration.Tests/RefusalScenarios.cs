using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Simulation.EngramApp;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// The cloud's batch limit lowered below the device's (500): every batch the device sends is refused whole with
/// batch-too-large. Needs no server, so it runs beside the scenarios that share them.
/// </summary>
public sealed class When_the_clouds_batch_limit_is_below_the_devices
{
    [Fact]
    public async Task The_device_sends_smaller_batches_and_every_row_lands_once()
    {
        await using var world = await PipelineWorld.CreateAsync(servers: null, "smaller_batches", ingestProcesses: 1,
            ingestSettings: new Dictionary<string, string?> { ["Ingest:MaxBatchMutations"] = "40" });
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var device = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);

        var seqs = new EngramWorkload(31, "device-a", ["team"], enrollAfter: 0).Journal(device.Engram, 1_000);
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        Assert.InRange(device.Runtime.Targets.Window("team").MaxMutations!.Value, 1, 40);
        Assert.Null(SyncCounts.Read(device.Runtime.Database, new SyncTarget("team")).Refusal);
        // Every refused batch was sent again smaller, those in flight behind the first too: none was kept as a refusal.
        var status = Assert.Single(await DeviceStatus.ReadAsync(device.DatabasePath, cloudHead: null, CancellationToken.None));
        Assert.Null(status.LastRefusal);
        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(seqs.Count);
    }
}
