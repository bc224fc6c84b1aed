using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.Cli.Simulation;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Engram.Pipeline.Benchmarks;

/// <summary>P: Engram.Pipeline itself, hosted as in production (every device and the ingest with its own broker connection).</summary>
public static class PipelineBench
{
    /// <summary>Throughput: every device records its share as fast as it can; done when every mutation has its PushAccepted recorded.</summary>
    public static async Task<double> ThroughputAsync(Uri amqp, string cloudDb, string directory, int devices, int mutations,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        await using var cluster = await StartAsync(amqp, cloudDb, directory, devices, deviceSettings);
        var perDevice = mutations / devices;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(cluster.Devices.Select((device, i) => Task.Run(async () =>
        {
            var workload = new Workload(device.DeviceId, 7 + i);
            for (var recorded = 0; recorded < perDevice; recorded += 100)
            {
                await device.Journal.RecordAsync(workload.Next(Math.Min(100, perDevice - recorded)), CancellationToken.None);
            }
        })));
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(10), CancellationToken.None, untilCursorsAtHead: false);
        return perDevice * devices / clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Latency at a fixed offered load: one device records <paramref name="perSecond"/> mutations a
    /// second, every 10 ms, for <paramref name="duration"/>; each mutation's latency is journal commit
    /// to PushAccepted recorded, read from the device's database.
    /// </summary>
    public static async Task<List<double>> LatencyAsync(Uri amqp, string cloudDb, string directory, int perSecond, TimeSpan duration)
    {
        await using var cluster = await StartAsync(amqp, cloudDb, directory, devices: 1);
        var device = cluster.Devices[0];
        var workload = new Workload(device.DeviceId, 11);
        var tick = TimeSpan.FromMilliseconds(10);
        var perTick = Math.Max(1, perSecond / 100);
        using var timer = new PeriodicTimer(tick);
        var clock = Stopwatch.StartNew();
        var due = 0L;
        long recorded = 0;
        while (clock.Elapsed < duration && await timer.WaitForNextTickAsync())
        {
            // Catch up on ticks missed while a write was slow, so the offered load stays what was asked.
            due = (long)(clock.Elapsed.TotalSeconds * perSecond);
            var now = (int)Math.Min(due - recorded, perTick * 10);
            if (now > 0)
            {
                await device.Journal.RecordAsync(workload.Next(now), CancellationToken.None);
                recorded += now;
            }
        }
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(5), CancellationToken.None, untilCursorsAtHead: false);

        var latencies = new List<double>();
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
        await connection.OpenAsync();
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT occurred_at, acked_at FROM sync_mutations WHERE source = 'local' AND acked_at IS NOT NULL";
        await using var reader = await select.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            latencies.Add((DateTimeOffset.Parse(reader.GetString(1), CultureInfo.InvariantCulture)
                           - DateTimeOffset.Parse(reader.GetString(0), CultureInfo.InvariantCulture)).TotalMilliseconds);
        }
        return latencies;
    }

    private static async Task<PipelineCluster> StartAsync(Uri amqp, string cloudDb, string directory, int devices,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        var work = Directory.CreateDirectory(Path.Combine(directory, $"p-{Guid.NewGuid():N}"));
        // The table goes to stdout; the hosts' shutdown chatter (pulls cancelled mid-flight) would bury it.
        var cluster = new PipelineCluster(new ClusterSettings(amqp, cloudDb, work.FullName)
        {
            IngestProcesses = 1, LogLevel = LogLevel.None, DeviceSettings = deviceSettings ?? new Dictionary<string, string?>(),
        });
        await cluster.StartIngestAsync(CancellationToken.None);
        var target = $"bench-{Guid.NewGuid():N}";
        for (var d = 0; d < devices; d++)
        {
            await cluster.StartDeviceAsync($"bench-{d + 1}", target, CancellationToken.None);
        }
        return cluster;
    }
}
