using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// Ready while the device database answers; degraded while the publisher or the puller keeps failing
/// (and retrying), or while the cursor lags the head by more than the threshold.
/// </summary>
public sealed class DeviceHealthCheck(DeviceRuntime device, HealthOptions options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var counts = SyncCounts.Read(device.Database, device.Identity.Target);
            var summary = $"{counts.Pending} pending, cursor {counts.Cursor} of head {counts.Head}";
            var failing = new[] { ("publisher", device.Publisher.Backoff.Failing), ("puller", device.Puller.Backoff.Failing) }
                .Where(loop => loop.Failing is not null)
                .Select(loop => $"{loop.Item1} failing since {loop.Failing!.Since:u} ({loop.Failing.Attempts} attempts, " +
                                $"next in {loop.Failing.NextDelay.TotalSeconds:0} s): {loop.Failing.LastError}")
                .ToList();
            if (failing.Count > 0)
            {
                return Task.FromResult(HealthCheckResult.Degraded($"{summary}; {string.Join("; ", failing)}"));
            }
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
