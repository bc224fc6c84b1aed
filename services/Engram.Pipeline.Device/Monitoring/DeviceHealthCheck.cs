using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Engram.Pipeline.Device.Monitoring;

/// <summary>Ready while the device database answers; degraded while the cursor lags the head by more than the threshold.</summary>
public sealed class DeviceHealthCheck(DeviceRuntime device, HealthOptions options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var counts = SyncCounts.Read(device.Database, device.Identity);
            var summary = $"{counts.Pending} pending, cursor {counts.Cursor} of head {counts.Head}";
            return Task.FromResult(counts.Lag > options.MaxLag
                ? HealthCheckResult.Degraded($"{summary}: lag {counts.Lag} is over {options.MaxLag}")
                : HealthCheckResult.Healthy(summary));
        }
#pragma warning disable CA1031 // Any failure to read the database is the answer.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"the device database does not answer: {e.Message}"));
        }
    }
}
