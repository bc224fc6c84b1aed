using MassTransit;
using Microsoft.Extensions.Hosting;

namespace Engram.Pipeline.Device;

/// <summary>Runs the device's publisher and puller once the bus is up.</summary>
public sealed class DeviceWorker(DeviceRuntime runtime, IBus bus) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => runtime.RunAsync(bus, stoppingToken);
}
