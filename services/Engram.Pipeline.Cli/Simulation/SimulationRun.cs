using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.Cli.Verification;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Cli.Simulation;

/// <summary>How big a simulated fleet is.</summary>
public sealed record SimulationOptions(int Devices, int MutationsPerDevice, string Target = "team", int Seed = 42)
{
    /// <summary>Mutations recorded per journal transaction.</summary>
    public int RecordChunk { get; init; } = 50;

    public TimeSpan SettleDeadline { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>What a simulation measured and concluded.</summary>
public sealed record SimulationReport(
    IReadOnlyList<Verdict> Verdicts, long Mutations, TimeSpan Elapsed, double P50Ms, double P99Ms)
{
    public bool Pass => Verdicts.All(v => v.Pass);

    public double MutationsPerSecond => Mutations / Elapsed.TotalSeconds;
}

/// <summary>
/// Runs a fleet end to end: every device records its workload while the pipeline runs, then the
/// run waits for the cloud to answer everything and checks the invariants from the databases.
/// </summary>
public static class SimulationRun
{
    public static async Task<SimulationReport> RunAsync(
        PipelineCluster cluster, SimulationOptions options, IProgress<string>? progress, CancellationToken ct)
    {
        await cluster.StartIngestAsync(ct);
        for (var d = 0; d < options.Devices; d++)
        {
            await cluster.StartDeviceAsync($"device-{d + 1}", options.Target, ct);
        }
        progress?.Report($"{cluster.Settings.IngestProcesses} ingest processes and {options.Devices} devices running");

        var clock = Stopwatch.StartNew();
        await Task.WhenAll(cluster.Devices.Select((device, index) => Task.Run(async () =>
        {
            var workload = new Workload(device.DeviceId, options.Seed + index);
            for (var recorded = 0; recorded < options.MutationsPerDevice; recorded += options.RecordChunk)
            {
                await device.Journal.RecordAsync(
                    workload.Next(Math.Min(options.RecordChunk, options.MutationsPerDevice - recorded)), ct);
            }
        }, ct)));
        progress?.Report($"recorded {options.Devices * options.MutationsPerDevice} mutations in {clock.Elapsed.TotalSeconds:0.0} s");

        await cluster.WaitUntilSettledAsync(options.SettleDeadline, ct);
        var elapsed = clock.Elapsed;
        progress?.Report($"every mutation answered after {elapsed.TotalSeconds:0.0} s");

        var verdicts = await InvariantChecker.CheckPushAsync(cluster.Settings.CloudDb,
            cluster.Devices.Select(d => new DeviceDatabaseRef(d.DeviceId, d.Target, d.DatabasePath)).ToList(), ct);
        var latencies = await AckLatenciesAsync(cluster, ct);
        return new SimulationReport(verdicts, (long)options.Devices * options.MutationsPerDevice, elapsed,
            Percentile(latencies, 0.50), Percentile(latencies, 0.99));
    }

    /// <summary>Journal commit to PushAccepted recorded, per mutation, in milliseconds.</summary>
    private static async Task<List<double>> AckLatenciesAsync(PipelineCluster cluster, CancellationToken ct)
    {
        var latencies = new List<double>();
        foreach (var device in cluster.Devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
            await connection.OpenAsync(ct);
            await using var select = connection.CreateCommand();
            select.CommandText = "SELECT occurred_at, acked_at FROM sync_mutations WHERE source = 'local' AND acked_at IS NOT NULL";
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var occurred = DateTimeOffset.Parse(reader.GetString(0), CultureInfo.InvariantCulture);
                var acked = DateTimeOffset.Parse(reader.GetString(1), CultureInfo.InvariantCulture);
                latencies.Add((acked - occurred).TotalMilliseconds);
            }
        }
        latencies.Sort();
        return latencies;
    }

    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
