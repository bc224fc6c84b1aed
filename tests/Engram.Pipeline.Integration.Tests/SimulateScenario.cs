using Engram.Pipeline.Simulation;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// The README's main job, as a test: four devices on the embedded default, a second project enrolled late. Needs no
/// server, so it runs beside the scenarios that share them; the three-device push scenario runs the same simulation
/// through RabbitMQ and PostgreSQL.
/// </summary>
public sealed class When_four_devices_simulate_their_workloads_on_the_embedded_default(ITestOutputHelper output)
{
    /// <summary>Enough for every kind of mutation to race every other; the figures worth quoting come from the benchmark.</summary>
    private const int MutationsPerDevice = 600;

    [Fact]
    public async Task Every_invariant_passes_and_the_devices_converge()
    {
        await using var world = await PipelineWorld.CreateAsync(servers: null, "simulate", ingestProcesses: 1);

        var report = await SimulationRun.RunAsync(world.Cluster, new SimulationOptions(Devices: 4, MutationsPerDevice: MutationsPerDevice, ["run", "run-late"]),
            progress: null, CancellationToken.None);

        foreach (var verdict in report.Verdicts)
        {
            output.WriteLine($"{(verdict.Pass ? "PASS" : "FAIL")} {verdict.Name}: {verdict.Detail}");
        }
        output.WriteLine($"{report.MutationsPerSecond:0} mutations/s, to accepted p50 {report.ToAccepted.P50:0} ms " +
                         $"p99 {report.ToAccepted.P99:0} ms, to visible p50 {report.ToVisible.P50:0} ms p99 {report.ToVisible.P99:0} ms");
        Assert.Equal(6, report.Verdicts.Count);
        Assert.True(report.Pass, string.Join('\n', report.Verdicts.Select(v => $"{v.Name}: {v.Detail}")));
        await world.AssertEveryJournalRowMappedAsync(report.Mutations);
        Assert.Equal(await world.MappedAsync(), await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }
}
