using System.Diagnostics;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_cloud_ingest_is_scaled_out(ServersFixture servers, ITestOutputHelper output)
{
    private const int Targets = 4;
    private const int DevicesPerTarget = 2;
    private const int MutationsPerDevice = 600;

    [Fact]
    public async Task One_and_then_four_ingest_processes_keep_every_invariant_over_several_targets()
    {
        var figures = new List<string>();
        foreach (var processes in new[] { 1, 4 })
        {
            await using var world = await PipelineWorld.CreateAsync(servers, $"scale_{processes}", ingestProcesses: processes);
            var environment = new Dictionary<string, string>
            {
                ["RabbitMq__Uri"] = world.Cluster.Settings.RabbitMqUri!.ToString(),
                ["ConnectionStrings__CloudDb"] = world.Cluster.Settings.CloudDb!,
                // The cluster's devices share one trusted account.
                ["Ingest__AuthoriseDevices"] = "false",
            };
            var ingest = new List<ServiceProcess>();
            try
            {
                // Real OS processes competing for engram-push, as `docker compose up --scale cloud-ingest=4` runs them.
                for (var i = 0; i < processes; i++)
                {
                    ingest.Add(await ServiceProcess.StartAsync("Engram.Pipeline.CloudIngest", environment, TimeSpan.FromMinutes(1)));
                }
                for (var t = 0; t < Targets; t++)
                {
                    for (var d = 0; d < DevicesPerTarget; d++)
                    {
                        await world.Cluster.StartDeviceAsync($"t{t}-d{d}", CancellationToken.None, seed: 100 + t * DevicesPerTarget + d);
                    }
                }

                var clock = Stopwatch.StartNew();
                await Task.WhenAll(world.Cluster.Devices.Select((device, i) => Task.Run(() =>
                    new EngramWorkload(100 + i, device.DeviceId, [$"project-{i / DevicesPerTarget}"], enrollAfter: 0)
                        .Journal(device.Engram, MutationsPerDevice))));
                await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(3), CancellationToken.None);
                var elapsed = clock.Elapsed;

                await world.AssertInvariantsAsync();
                var total = await world.MappedAsync();
                figures.Add($"{processes} ingest process(es): {total} mutations over {Targets} targets from {Targets * DevicesPerTarget} devices, " +
                            $"pushed and pulled everywhere in {elapsed.TotalSeconds:0.0} s = {total / elapsed.TotalSeconds:0} mutations/s; I1-I6 PASS");
            }
            finally
            {
                foreach (var process in ingest)
                {
                    await process.DisposeAsync();
                }
            }
        }
        foreach (var line in figures)
        {
            output.WriteLine(line);
        }
        Assert.Equal(2, figures.Count);
    }
}
