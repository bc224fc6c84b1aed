using System.Diagnostics;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Testing;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// The path a machine with a Docker engine takes for the tests' servers: RabbitMQ and PostgreSQL in containers,
/// started by Testcontainers' RabbitMq and PostgreSql modules on the images the deployment names. Run whatever the
/// machine: without an engine or a registry, one is started and the images are built as local stand-ins.
/// </summary>
public sealed class When_the_servers_run_in_containers(ITestOutputHelper output)
{
    [Fact]
    public async Task Three_devices_converge_through_them()
    {
        var clock = Stopwatch.StartNew();
        await using var servers = await TestServers.StartInContainersAsync();
        output.WriteLine($"servers: {servers.Source}, RabbitMQ {servers.RabbitMqUri.Host}:{servers.RabbitMqUri.Port}, ready after {clock.Elapsed.TotalSeconds:0} s");
        Assert.Equal("testcontainers", servers.Source);

        await using var world = await PipelineWorld.CreateAsync(servers, "containers", ingestProcesses: 2);
        var report = await SimulationRun.RunAsync(world.Cluster, new SimulationOptions(Devices: 3, MutationsPerDevice: 500, ["team"]),
            progress: null, CancellationToken.None);

        output.WriteLine($"{report.Mutations} mutations in {report.Elapsed.TotalSeconds:0.0} s through the containers");
        Assert.True(report.Pass, string.Join('\n', report.Verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}")));
        await world.AssertEveryJournalRowMappedAsync(report.Mutations);
        Assert.Equal(await world.MappedAsync(), await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }
}
