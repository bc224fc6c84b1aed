using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engram.Pipeline.Benchmarks;

/// <summary>What a row run with the services as OS processes measured: its rate, each process's peak memory and their CPU time.</summary>
public sealed record ProcessRun(double Rate, double DeviceMb, double IngestMb, double CpuSeconds);

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

    /// <summary>
    /// Writes a journal backlog of <paramref name="rows"/> mutations for device <c>bench-1</c> of
    /// <paramref name="target"/> through the record API, before any pipeline runs, into a file to copy per run.
    /// </summary>
    public static async Task<string> WriteBacklogAsync(string directory, string target, int rows)
    {
        var path = Path.Combine(directory, $"backlog-{Guid.NewGuid():N}.db");
        var runtime = DeviceServices.CreateRuntime($"Data Source={path}", new DeviceOptions { Id = "bench-1", Target = target },
            new PublisherOptions(), new PullerOptions(), TimeProvider.System, NullLoggerFactory.Instance);
        var workload = new Workload("bench-1", 13);
        for (var recorded = 0; recorded < rows; recorded += 500)
        {
            await runtime.Journal.RecordAsync(workload.Next(Math.Min(500, rows - recorded)), CancellationToken.None);
        }
        await using (var connection = new SqliteConnection($"Data Source={path}"))
        {
            await connection.OpenAsync();
            await using var checkpoint = connection.CreateCommand();
            checkpoint.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
            await checkpoint.ExecuteNonQueryAsync();
        }
        SqliteConnection.ClearAllPools();
        return path;
    }

    /// <summary>
    /// Backlog drain: the device starts with the journal <paramref name="backlog"/> (from
    /// <see cref="WriteBacklogAsync"/>) already written and nothing of it sent; done when every row has
    /// its PushAccepted recorded. Device and ingest run as their own OS processes, so each one's peak memory is its own.
    /// </summary>
    public static async Task<ProcessRun> DrainAsync(Uri amqp, string cloudDb, string directory, string backlog, string target, int rows)
    {
        var path = Path.Combine(directory, $"drain-{Guid.NewGuid():N}.db");
        File.Copy(backlog, path);
        return await RunDeviceProcessAsync(amqp, cloudDb, path, "bench-1", target, rows,
            async () => await PipelineCluster.PendingAsync(path, CancellationToken.None) == 0);
    }

    /// <summary>
    /// Pull catch-up: a new device joins <paramref name="target"/>, whose log already holds
    /// <paramref name="rows"/> rows of another device; done when its cursor reaches them. Device and ingest run as OS processes.
    /// </summary>
    public static async Task<ProcessRun> CatchUpAsync(Uri amqp, string cloudDb, string directory, string target, int rows)
    {
        var path = Path.Combine(directory, $"catchup-{Guid.NewGuid():N}.db");
        return await RunDeviceProcessAsync(amqp, cloudDb, path, "bench-new", target, rows,
            async () => await PipelineCluster.CursorAsync(path, target, CancellationToken.None) >= rows);
    }

    private static async Task<ProcessRun> RunDeviceProcessAsync(Uri amqp, string cloudDb, string databasePath, string deviceId, string target,
        int rows, Func<Task<bool>> done)
    {
        var environment = new Dictionary<string, string>
        {
            ["RabbitMq__Uri"] = amqp.ToString(),
            ["ConnectionStrings__CloudDb"] = cloudDb,
            ["Logging__LogLevel__Default"] = "Warning",
            // One trusted broker account for the whole benchmark, as the in-process rows run.
            ["Ingest__AuthoriseDevices"] = "false",
        };
        await using var ingest = await ServiceProcess.StartAsync("Engram.Pipeline.CloudIngest", environment, TimeSpan.FromMinutes(1));
        var clock = Stopwatch.StartNew();
        await using var device = await ServiceProcess.StartAsync("Engram.Pipeline.Device", new Dictionary<string, string>(environment)
        {
            ["ConnectionStrings__DeviceDb"] = $"Data Source={databasePath}",
            ["Device__Id"] = deviceId,
            ["Device__Target"] = target,
        }, TimeSpan.FromMinutes(1));
        await Condition.WaitUntilAsync(done, TimeSpan.FromMinutes(30), $"{deviceId} done with {rows} rows");
        return new ProcessRun(rows / clock.Elapsed.TotalSeconds, device.PeakMemoryMb, ingest.PeakMemoryMb,
            (device.CpuTime + ingest.CpuTime).TotalSeconds);
    }

    private static async Task<PipelineCluster> StartAsync(Uri amqp, string cloudDb, string directory, int devices,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        var cluster = await StartCloudAsync(amqp, cloudDb, directory, deviceSettings);
        var target = $"bench-{Guid.NewGuid():N}";
        for (var d = 0; d < devices; d++)
        {
            await cluster.StartDeviceAsync($"bench-{d + 1}", target, CancellationToken.None);
        }
        return cluster;
    }

    /// <summary>A cluster in a work directory of its own with one ingest host running and no device yet.</summary>
    private static async Task<PipelineCluster> StartCloudAsync(Uri amqp, string cloudDb, string directory,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        var work = Directory.CreateDirectory(Path.Combine(directory, $"p-{Guid.NewGuid():N}"));
        // The table goes to stdout; the hosts' shutdown chatter (pulls cancelled mid-flight) would bury it.
        var cluster = new PipelineCluster(new ClusterSettings(amqp, cloudDb, work.FullName)
        {
            IngestProcesses = 1, LogLevel = LogLevel.None, DeviceSettings = deviceSettings ?? new Dictionary<string, string?>(),
        });
        await cluster.StartIngestAsync(CancellationToken.None);
        return cluster;
    }
}
