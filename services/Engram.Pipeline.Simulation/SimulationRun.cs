using System.Collections.Concurrent;
using System.Diagnostics;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Simulation.Verification;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation;

/// <summary>How big a simulated fleet is, and the projects its Engram users work in.</summary>
/// <param name="Devices">Devices in the fleet, each on an Engram database of its own.</param>
/// <param name="MutationsPerDevice">Mutations Engram journals on each device.</param>
/// <param name="Seed">Makes every device's stream of Engram use.</param>
/// <param name="Projects">Enrolled in Engram's sync by every device, in order, after a few operations of Engram use
/// (enrollment backfills what came before); the last only after <see cref="LateEnrollment"/> operations.</param>
public sealed record SimulationOptions(int Devices, int MutationsPerDevice, IReadOnlyList<string> Projects, int Seed = 42)
{
    /// <summary>Operations of Engram use before the first project is enrolled.</summary>
    public int Enrollment { get; init; } = 20;

    /// <summary>Operations of Engram use before the last project is enrolled: a project enrolled while the devices run.</summary>
    public int LateEnrollment { get; init; } = 500;

    public TimeSpan SettleDeadline { get; init; } = TimeSpan.FromMinutes(10);
}

/// <summary>Latency percentiles in milliseconds.</summary>
public sealed record Latency(double P50, double P99, long Samples);

/// <summary>Where a running simulation is.</summary>
public sealed record SimulationProgress(TimeSpan Elapsed, long Journaled, long Answered, long Behind);

/// <summary>What a simulation measured and concluded.</summary>
public sealed record SimulationReport(
    IReadOnlyList<Verdict> Verdicts, long Mutations, TimeSpan Elapsed, Latency ToAccepted, Latency ToVisible)
{
    public bool Pass => Verdicts.All(v => v.Pass);

    public double MutationsPerSecond => Mutations / Elapsed.TotalSeconds;
}

/// <summary>
/// Runs a fleet end to end: on every device, Engram is used (<see cref="EngramWorkload"/>: sessions, observations,
/// prompts, relations, edits and deletes, written into its Engram database as the Engram application writes them)
/// while the whole pipeline runs (push, cursor service, pull); then the run waits for quiescence and checks I1–I6
/// from the databases.
/// </summary>
public static class SimulationRun
{
    public static async Task<SimulationReport> RunAsync(
        PipelineCluster cluster, SimulationOptions options, IProgress<SimulationProgress>? progress, CancellationToken ct)
    {
        await cluster.StartIngestAsync(ct);
        for (var d = 0; d < options.Devices; d++)
        {
            await cluster.StartDeviceAsync($"device-{d + 1}", ct, seed: options.Seed + d);
        }

        // When each journal row was committed, by (device, local seq): where latency is measured from.
        var committed = new ConcurrentDictionary<(string Device, long Seq), DateTimeOffset>();
        var clock = Stopwatch.StartNew();
        using var reporting = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var reporter = progress is null ? Task.CompletedTask : ReportAsync(cluster, clock, progress, reporting.Token);
        await Task.WhenAll(cluster.Devices.Select((device, index) => Task.Run(() => Use(device,
            new EngramWorkload(options.Seed * 1000 + index, device.DeviceId, options.Projects, options.Enrollment, options.LateEnrollment),
            options.MutationsPerDevice, committed, ct), ct)));
        await cluster.WaitUntilSettledAsync(options.SettleDeadline, ct);
        var elapsed = clock.Elapsed;
        await reporting.CancelAsync();
        await reporter.ContinueWith(_ => { }, TaskScheduler.Default);
        progress?.Report(await ProgressAsync(cluster, clock, ct));

        var verdicts = await InvariantChecker.CheckAllAsync(cluster.Cloud, await cluster.DatabasesAsync(ct), ct);
        return new SimulationReport(verdicts, committed.Count, elapsed,
            Summarise(await ToAcceptedAsync(await cluster.DatabasesAsync(ct), committed, ct)),
            Summarise(await ToVisibleAsync(await cluster.DatabasesAsync(ct), committed, ct)));
    }

    /// <summary>
    /// Uses Engram on <paramref name="device"/> through <paramref name="workload"/> as fast as it goes until it has journaled
    /// <paramref name="mutations"/> rows, recording when each journal row was committed under (device, local seq).
    /// </summary>
    public static void Use(DeviceNode device, EngramWorkload workload, int mutations,
        ConcurrentDictionary<(string Device, long Seq), DateTimeOffset> committed, CancellationToken ct)
    {
        for (var journaled = 0; journaled < mutations;)
        {
            ct.ThrowIfCancellationRequested();
            journaled += Record(device.DeviceId, workload.Next(device.Engram), committed);
        }
    }

    /// <summary>Records <paramref name="seqs"/>, journaled on device <paramref name="deviceId"/> just now, as committed; returns how many.</summary>
    public static int Record(string deviceId, IReadOnlyList<long> seqs, ConcurrentDictionary<(string Device, long Seq), DateTimeOffset> committed)
    {
        var now = DateTimeOffset.UtcNow;
        foreach (var seq in seqs)
        {
            committed[(deviceId, seq)] = now;
        }
        return seqs.Count;
    }

    /// <summary>
    /// From journal commit to the cloud's answer recorded on the device that wrote it (its mapping's <c>synced_at</c>),
    /// in milliseconds, sorted, one sample per mapped row.
    /// </summary>
    public static Task<List<double>> ToAcceptedAsync(IReadOnlyList<DeviceDatabaseRef> devices,
        IReadOnlyDictionary<(string, long), DateTimeOffset> committed, CancellationToken ct) =>
        LatenciesAsync(devices, committed, "SELECT $device, local_seq, synced_at FROM sync_seq_mapping", ct);

    /// <summary>
    /// From journal commit to the mutation applied on another device (found by Engram's own search from then on: its
    /// <c>pipeline_applied.applied_at</c>), in milliseconds, sorted, one sample per row and device that applied it.
    /// </summary>
    public static Task<List<double>> ToVisibleAsync(IReadOnlyList<DeviceDatabaseRef> devices,
        IReadOnlyDictionary<(string, long), DateTimeOffset> committed, CancellationToken ct) =>
        LatenciesAsync(devices, committed, "SELECT origin_device, origin_local_seq, applied_at FROM pipeline_applied WHERE outcome = 'applied'", ct);

    private static async Task ReportAsync(PipelineCluster cluster, Stopwatch clock, IProgress<SimulationProgress> progress, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            progress.Report(await ProgressAsync(cluster, clock, ct));
            await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
        }
    }

    private static async Task<SimulationProgress> ProgressAsync(PipelineCluster cluster, Stopwatch clock, CancellationToken ct)
    {
        long journaled = 0, answered = 0;
        foreach (var device in cluster.Devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly;Pooling=False");
            await connection.OpenAsync(ct);
            await using var count = connection.CreateCommand();
            count.CommandText = """
                SELECT (SELECT COUNT(*) FROM sync_mutations),
                       (SELECT COUNT(*) FROM sync_seq_mapping) + (SELECT COUNT(*) FROM pipeline_rejections)
                """;
            await using var reader = await count.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            journaled += reader.GetInt64(0);
            answered += reader.GetInt64(1);
        }
        var (_, behind, _) = await cluster.LagAsync(includeCursors: true, ct);
        return new SimulationProgress(clock.Elapsed, journaled, answered, behind);
    }

    /// <summary>
    /// From journal commit to the moment a device recorded it: the cloud's answer on the device that wrote it (its
    /// mapping), or the mutation applied on another device (found by Engram's own search from then on).
    /// </summary>
    private static async Task<List<double>> LatenciesAsync(IReadOnlyList<DeviceDatabaseRef> devices,
        IReadOnlyDictionary<(string, long), DateTimeOffset> committed, string sql, CancellationToken ct)
    {
        var latencies = new List<double>();
        foreach (var device in devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly;Pooling=False");
            await connection.OpenAsync(ct);
            await using var select = connection.CreateCommand();
            select.CommandText = sql;
            select.Parameters.AddWithValue("$device", device.DeviceId);
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                if (committed.TryGetValue((reader.GetString(0), reader.GetInt64(1)), out var at)
                    && DeviceSync.Storage.EngramTime.Parse(reader.GetString(2)) is { } recorded)
                {
                    latencies.Add((recorded - at).TotalMilliseconds);
                }
            }
        }
        latencies.Sort();
        return latencies;
    }

    /// <summary>The median and 99th percentile of <paramref name="sorted"/> latencies.</summary>
    public static Latency Summarise(List<double> sorted) => new(Percentile(sorted, 0.50), Percentile(sorted, 0.99), sorted.Count);

    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
