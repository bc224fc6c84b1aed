using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Engram.Pipeline.Cloud.Storage;

/// <summary>Ready only while the cloud database answers a query.</summary>
public sealed class CloudStoreHealthCheck(ICloudStore store) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await store.HeadAsync("health-check", cancellationToken);
            return HealthCheckResult.Healthy("the cloud database answers");
        }
#pragma warning disable CA1031 // Any failure to reach the database is the answer.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return HealthCheckResult.Unhealthy($"the cloud database does not answer: {e.Message}");
        }
    }
}
