using Engram.Pipeline.Simulation;
using Engram.Pipeline.Testing;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_four_devices_simulate_their_workloads_through_rabbitmq_and_postgresql(
    ServersFixture servers, ITestOutputHelper output)
{
    [Fact]
    public async Task Every_invariant_passes_and_the_devices_converge()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "simulate", ingestProcesses: 3);
        await FourDevices.SimulateAsync(world, output);
    }
}

/// <summary>Needs no server, so it runs beside the scenarios that share them.</summary>
public sealed class When_four_devices_simulate_their_workloads_on_the_embedded_default(ITestOutputHelper output)
{
    [Fact]
    public async Task Every_invariant_passes_and_the_devices_converge()
    {
        await using var world = await PipelineWorld.CreateAsync(servers: null, "simulate", ingestProcesses: 1);
        await FourDevices.SimulateAsync(world, output);
    }
}

internal static class FourDevices
{
    /// <summary>Enough for every kind of mutation to race every other; the figures worth quoting come from the benchmark.</summary>
    private const int MutationsPerDevice = 1_000;

    public static async Task SimulateAsync(PipelineWorld world, ITestOutputHelper output)
    {
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
