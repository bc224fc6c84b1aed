using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.Simulation.Verification;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation;

/// <summary>How big a simulated fleet is.</summary>
public sealed record SimulationOptions(int Devices, int MutationsPerDevice, string Target = "team", int Seed = 42)
{
    /// <summary>Mutations recorded per journal transaction.</summary>
    public int RecordChunk { get; init; } = 50;

    public TimeSpan SettleDeadline { get; init; } = TimeSpan.FromMinutes(10);
}

/// <summary>Latency percentiles in milliseconds.</summary>
public sealed record Latency(double P50, double P99, long Samples);

/// <summary>Where a running simulation is.</summary>
public sealed record SimulationProgress(TimeSpan Elapsed, long Recorded, long Answered, long Behind);

/// <summary>What a simulation measured and concluded.</summary>
public sealed record SimulationReport(
    IReadOnlyList<Verdict> Verdicts, long Mutations, TimeSpan Elapsed, Latency ToAccepted, Latency ToVisible)
{
    public bool Pass => Verdicts.All(v => v.Pass);

    public double MutationsPerSecond => Mutations / Elapsed.TotalSeconds;
}

/// <summary>
/// Runs a fleet end to end: every device records its workload while the whole pipeline runs (push,
/// cursor service, pull), then the run waits for quiescence and checks I1–I6 from the databases.
/// </summary>
public static class SimulationRun
{
    public static async Task<SimulationReport> RunAsync(
        PipelineCluster cluster, SimulationOptions options, IProgress<SimulationProgress>? progress, CancellationToken ct)
    {
        await cluster.StartIngestAsync(ct);
        for (var d = 0; d < options.Devices; d++)
        {
            await cluster.StartDeviceAsync($"device-{d + 1}", options.Target, ct);
        }

        var clock = Stopwatch.StartNew();
        using var reporting = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var reporter = progress is null ? Task.CompletedTask : ReportAsync(cluster, clock, progress, reporting.Token);
        await Task.WhenAll(cluster.Devices.Select((device, index) => Task.Run(async () =>
        {
            var workload = new Workload(device.DeviceId, options.Seed + index);
            for (var recorded = 0; recorded < options.MutationsPerDevice; recorded += options.RecordChunk)
            {
                await device.Journal.RecordAsync(
                    workload.Next(Math.Min(options.RecordChunk, options.MutationsPerDevice - recorded)), ct);
            }
        }, ct)));
        await cluster.WaitUntilSettledAsync(options.SettleDeadline, ct);
        var elapsed = clock.Elapsed;
        await reporting.CancelAsync();
        await reporter.ContinueWith(_ => { }, TaskScheduler.Default);
        progress?.Report(await ProgressAsync(cluster, clock, ct));

        var verdicts = await InvariantChecker.CheckAllAsync(cluster.Cloud,
            cluster.Devices.Select(d => new DeviceDatabaseRef(d.DeviceId, d.Target, d.DatabasePath)).ToList(), ct);
        return new SimulationReport(verdicts, (long)options.Devices * options.MutationsPerDevice, elapsed,
            await LatencyAsync(cluster, "local", ct), await LatencyAsync(cluster, "remote", ct));
    }

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
        long recorded = 0, answered = 0;
        foreach (var device in cluster.Devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
            await connection.OpenAsync(ct);
            await using var count = connection.CreateCommand();
            count.CommandText = """
                SELECT COUNT(*), COUNT(acked_at) + COUNT(rejected_at) FROM sync_mutations WHERE source = 'local'
                """;
            await using var reader = await count.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            recorded += reader.GetInt64(0);
            answered += reader.GetInt64(1);
        }
        var (_, behind) = await cluster.LagAsync(includeCursors: true, ct);
        return new SimulationProgress(clock.Elapsed, recorded, answered, behind);
    }

    /// <summary>
    /// From journal commit to PushAccepted recorded (own rows, <c>local</c>), or from the origin's
    /// journal commit to applied on this device (pulled rows, <c>remote</c>).
    /// </summary>
    private static async Task<Latency> LatencyAsync(PipelineCluster cluster, string source, CancellationToken ct)
    {
        var latencies = new List<double>();
        foreach (var device in cluster.Devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
            await connection.OpenAsync(ct);
            await using var select = connection.CreateCommand();
            select.CommandText = "SELECT occurred_at, acked_at FROM sync_mutations WHERE source = $source AND acked_at IS NOT NULL";
            select.Parameters.AddWithValue("$source", source);
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var occurred = DateTimeOffset.Parse(reader.GetString(0), CultureInfo.InvariantCulture);
                var acked = DateTimeOffset.Parse(reader.GetString(1), CultureInfo.InvariantCulture);
                latencies.Add((acked - occurred).TotalMilliseconds);
            }
        }
        latencies.Sort();
        return new Latency(Percentile(latencies, 0.50), Percentile(latencies, 0.99), latencies.Count);
    }

    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
