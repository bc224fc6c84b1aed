using Engram.Pipeline.DeviceSync.Monitoring;
using MassTransit;

namespace Engram.Pipeline.DeviceSync;

/// <summary>Runs the device's publisher and puller once the bus is up.</summary>
public sealed class DeviceWorker(DeviceRuntime runtime, IBus bus, DeviceMetrics metrics) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        runtime.Publisher.Sent += count => metrics.Pushed.Add(count);
        return runtime.RunAsync(bus, stoppingToken);
    }
}
