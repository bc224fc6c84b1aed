using System.Collections.Concurrent;
using System.Diagnostics;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Engram.Pipeline.Benchmarks;

/// <summary>What a row run with the services as OS processes measured: its rate, each process's peak memory and their CPU time.</summary>
public sealed record ProcessRun(double Rate, double DeviceMb, double IngestMb, double CpuSeconds);

/// <summary>P: Engram.Pipeline itself, hosted as in production (every device and the ingest with its own broker connection).</summary>
public static class PipelineBench
{
    /// <summary>
    /// Throughput: on every device, Engram is used as fast as it goes until its share is journaled, each device in a
    /// project of its own (push only: no device takes in another's rows); done when every journaled row has its
    /// PushAccepted recorded. The rate counts the rows accepted (Engram removes a superseded unsent session upsert,
    /// which is never sent).
    /// </summary>
    public static async Task<double> ThroughputAsync(Uri amqp, string cloudDb, string directory, int devices, int mutations,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        await using var cluster = await StartAsync(amqp, cloudDb, directory, devices, deviceSettings);
        var perDevice = mutations / devices;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(cluster.Devices.Select((device, i) => Task.Run(() =>
            Payloads.Journal(new EngramWorkload(7 + i, device.DeviceId, [OwnProject(i)], enrollAfter: 0), device.Engram, perDevice))));
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(10), CancellationToken.None, untilCursorsAtHead: false);
        var elapsed = clock.Elapsed;
        return cluster.Devices.Select((device, i) => SyncCounts.Read(device.Runtime.Database, new SyncTarget(OwnProject(i))).Acked).Sum()
            / elapsed.TotalSeconds;
    }

    /// <summary>
    /// Latency at a fixed offered load: <paramref name="devices"/> devices, each in a project of its own, share
    /// <paramref name="perSecond"/> mutations a second, journaled every 10 ms, for <paramref name="duration"/>; each
    /// mutation's latency is from its journal commit (the time each Engram operation returned) to its PushAccepted
    /// recorded (the mapping's <c>synced_at</c>).
    /// </summary>
    public static async Task<List<double>> LatencyAsync(Uri amqp, string cloudDb, string directory, int devices, int perSecond, TimeSpan duration)
    {
        await using var cluster = await StartAsync(amqp, cloudDb, directory, devices);
        var committed = new ConcurrentDictionary<(string Device, long Seq), DateTimeOffset>();
        await Task.WhenAll(cluster.Devices.Select((device, i) =>
            OfferAsync(device, new EngramWorkload(11 + i, device.DeviceId, [OwnProject(i)], enrollAfter: 0), perSecond / devices, duration, committed)));
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(5), CancellationToken.None, untilCursorsAtHead: false);

        return await SimulationRun.ToAcceptedAsync(await cluster.DatabasesAsync(CancellationToken.None), committed, CancellationToken.None);
    }

    /// <summary>The project device number <paramref name="index"/> alone writes in the push-only rows.</summary>
    private static string OwnProject(int index) => $"{Payloads.Project}-{index + 1}";

    /// <summary>
    /// L, the loop: <paramref name="devices"/> devices syncing one project, the first <paramref name="writers"/> of them
    /// using Engram (the others only enrolled), <paramref name="mutations"/> journaled in all: as fast as Engram goes, or
    /// offered at <paramref name="perSecond"/> a second in all. The rate is the cloud's head (the rows every device must
    /// take in) over the time from the first write until every device has answered its journal, its cursor is at the
    /// head and nothing it could replay is deferred. The latencies are from each journal commit to the row applied on
    /// each other device (its <c>pipeline_applied.applied_at</c>, from when Engram's search finds it), as the simulation
    /// measures them.
    /// </summary>
    public static async Task<(double Rate, List<double> ToVisible)> LoopAsync(Uri amqp, string cloudDb, string directory, int devices, int writers,
        int mutations, int? perSecond)
    {
        await using var cluster = await StartAsync(amqp, cloudDb, directory, devices);
        foreach (var reader in cluster.Devices.Skip(writers))
        {
            reader.Engram.EnrollProject(Payloads.Project);
        }
        var committed = new ConcurrentDictionary<(string Device, long Seq), DateTimeOffset>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(cluster.Devices.Take(writers).Select((device, i) =>
        {
            var workload = new EngramWorkload(23 + i, device.DeviceId, [Payloads.Project], enrollAfter: 0);
            return perSecond is { } offered
                ? OfferAsync(device, workload, offered / writers, TimeSpan.FromSeconds((double)mutations / offered), committed)
                : Task.Run(() => SimulationRun.Use(device, workload, mutations / writers, committed, CancellationToken.None));
        }));
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(10), CancellationToken.None);
        var rate = await cluster.Cloud.HeadAsync(Payloads.Project, CancellationToken.None) / clock.Elapsed.TotalSeconds;
        return (rate, await SimulationRun.ToVisibleAsync(await cluster.DatabasesAsync(CancellationToken.None), committed, CancellationToken.None));
    }

    /// <summary>
    /// Uses Engram on <paramref name="device"/> at <paramref name="perSecond"/> mutations a second, every 10 ms, for
    /// <paramref name="duration"/>, recording when each journal row was committed (the time each Engram operation returned).
    /// </summary>
    private static async Task OfferAsync(DeviceNode device, EngramWorkload workload, int perSecond, TimeSpan duration,
        ConcurrentDictionary<(string Device, long Seq), DateTimeOffset> committed)
    {
        var perTick = Math.Max(1, perSecond / 100);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        var clock = Stopwatch.StartNew();
        long journaled = 0;
        while (clock.Elapsed < duration && await timer.WaitForNextTickAsync())
        {
            // Catch up on ticks missed while a write was slow, so the offered load stays what was asked.
            var due = Math.Min((long)(clock.Elapsed.TotalSeconds * perSecond), journaled + (perTick * 10));
            while (journaled < due)
            {
                journaled += SimulationRun.Record(device.DeviceId, workload.Next(device.Engram), committed);
            }
        }
    }

    /// <summary>
    /// Writes a journal backlog of at least <paramref name="rows"/> mutations in <paramref name="project"/> into the
    /// Engram database of device <c>bench-1</c>, before any pipeline runs, into a file to copy per run: the first
    /// <see cref="Payloads.EngramRows"/> through the Engram application, then those journal rows again and again, as
    /// if their entities were edited once more. Returns the file and the rows journaled.
    /// </summary>
    public static async Task<(string Path, long Rows)> WriteBacklogAsync(string directory, string project, int rows)
    {
        var path = Path.Combine(directory, $"backlog-{Guid.NewGuid():N}.db");
        using (var engram = Payloads.NewEngram(path, "bench-1", seed: 13))
        {
            Payloads.Journal(new EngramWorkload(13, "bench-1", [project], enrollAfter: 0), engram, Math.Min(rows, Payloads.EngramRows));
        }
        await using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        await connection.OpenAsync();
        await using (var repeat = connection.CreateCommand())
        {
            repeat.CommandText = """
                INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, occurred_at, project)
                SELECT target_key, entity, entity_key, op, payload, source, occurred_at, project FROM sync_mutations ORDER BY seq LIMIT $missing
                """;
            var missing = repeat.Parameters.AddWithValue("$missing", 0L);
            for (long journaled; (journaled = SyncCounts.Read(connection, new SyncTarget(project)).Pending) < rows;)
            {
                missing.Value = rows - journaled;
                await repeat.ExecuteNonQueryAsync();
            }
        }
        await using var checkpoint = connection.CreateCommand();
        checkpoint.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
        await checkpoint.ExecuteNonQueryAsync();
        return (path, SyncCounts.Read(connection, new SyncTarget(project)).Pending);
    }

    /// <summary>
    /// Backlog drain: the device starts with the journal <paramref name="backlog"/> (from
    /// <see cref="WriteBacklogAsync"/>) already written and nothing of it sent; done when every row has
    /// its PushAccepted recorded. Device and ingest run as their own OS processes, so each one's peak memory is its own.
    /// </summary>
    public static async Task<ProcessRun> DrainAsync(Uri amqp, string cloudDb, string directory, string backlog, string project, long rows)
    {
        var path = Path.Combine(directory, $"drain-{Guid.NewGuid():N}.db");
        File.Copy(backlog, path);
        return await RunDeviceProcessAsync(amqp, cloudDb, path, "bench-1", project, rows, () => Counts(path, project).Pending == 0);
    }

    /// <summary>
    /// Pull catch-up: a new device, on a new Engram database with <paramref name="project"/> enrolled, joins the
    /// project, whose log already holds <paramref name="rows"/> rows of another device; done when its cursor reaches
    /// them. Device and ingest run as OS processes.
    /// </summary>
    public static async Task<ProcessRun> CatchUpAsync(Uri amqp, string cloudDb, string directory, string project, int rows)
    {
        var path = Path.Combine(directory, $"catchup-{Guid.NewGuid():N}.db");
        using (var engram = Payloads.NewEngram(path, "bench-new", seed: 17))
        {
            engram.EnrollProject(project);
        }
        return await RunDeviceProcessAsync(amqp, cloudDb, path, "bench-new", project, rows, () => Counts(path, project).Cursor >= rows);
    }

    /// <summary>Where the device on <paramref name="path"/> stands on <paramref name="project"/>, read beside its process.</summary>
    private static SyncCounts Counts(string path, string project)
    {
        using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        return SyncCounts.Read(connection, new SyncTarget(project));
    }

    /// <summary>
    /// Runs the ingest and, on <paramref name="databasePath"/>, the device syncing <paramref name="project"/>, as OS
    /// processes until <paramref name="done"/>; the rate is <paramref name="rows"/> over the time from the device's start.
    /// </summary>
    private static async Task<ProcessRun> RunDeviceProcessAsync(Uri amqp, string cloudDb, string databasePath, string deviceId, string project,
        long rows, Func<bool> done)
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
            ["Device__Target"] = project,
        }, TimeSpan.FromMinutes(1));
        await Condition.WaitUntilAsync(done, TimeSpan.FromMinutes(30), $"{deviceId} done with {rows} rows");
        return new ProcessRun(rows / clock.Elapsed.TotalSeconds, device.PeakMemoryMb, ingest.PeakMemoryMb,
            (device.CpuTime + ingest.CpuTime).TotalSeconds);
    }

    private static async Task<PipelineCluster> StartAsync(Uri amqp, string cloudDb, string directory, int devices,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        var cluster = await StartCloudAsync(amqp, cloudDb, directory, deviceSettings);
        for (var d = 0; d < devices; d++)
        {
            await cluster.StartDeviceAsync($"bench-{d + 1}", CancellationToken.None, seed: d + 1);
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
