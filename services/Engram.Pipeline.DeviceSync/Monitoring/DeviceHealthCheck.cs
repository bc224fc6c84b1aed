using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// Ready while the Engram database answers. Unhealthy while the cloud refuses a target's batches for a reason the
/// device cannot fix by itself (it keeps retrying, and is healthy again once a batch is accepted); degraded while
/// another holder has Engram's sync lease (the device then syncs nothing), while the publisher, the puller or the
/// cursor service (the answers on the device's queue) keeps failing and retrying (the broker is away, Engram holds
/// the database's write lock, the disk is full: the reason names it), or while a target's cursor lags its head by
/// more than the threshold.
/// </summary>
public sealed class DeviceHealthCheck(DeviceRuntime device, HealthOptions options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var counts = device.Targets.Current.Select(target => (target, counts: SyncCounts.Read(device.Database, target))).ToList();
            var summary = counts.Count == 0
                ? "no project enrolled in Engram's sync"
                : string.Join("; ", counts.Select(t => $"{t.target}: {t.counts.Pending} pending, cursor {t.counts.Cursor} of head {t.counts.Head}"));
            var problems = new[]
                {
                    ("publisher", device.Publisher.Backoff.Failing), ("puller", device.Puller.Backoff.Failing),
                    ("cursor service", device.AnswerRetries.Failing),
                }
                .Where(loop => loop.Failing is not null)
                .Select(loop => $"{loop.Item1} failing since {loop.Failing!.Since:u} ({loop.Failing.Attempts} attempts, " +
                                $"next in {loop.Failing.NextDelay.TotalSeconds:0} s): {loop.Failing.LastError}")
                .Concat(counts.Where(t => t.counts.Lag > options.MaxLag).Select(t => $"{t.target}: lag {t.counts.Lag} is over {options.MaxLag}"))
                .ToList();
            if (device.Lease.OtherHolder is { } holder)
            {
                problems.Insert(0, $"Engram's sync lease is held by {holder}; syncing nothing until it is free");
            }
            var refused = counts.Where(t => t.counts.Refusal is not null)
                .Select(t => $"{t.target}: the cloud refuses its batches ({t.counts.Refusal}); retrying").ToList();
            if (refused.Count > 0)
            {
                return Task.FromResult(HealthCheckResult.Unhealthy($"{summary}; {string.Join("; ", refused.Concat(problems))}"));
            }
            return Task.FromResult(problems.Count > 0
                ? HealthCheckResult.Degraded($"{summary}; {string.Join("; ", problems)}")
                : HealthCheckResult.Healthy(summary));
        }
#pragma warning disable CA1031 // Any failure to read the database is the answer.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"the Engram database does not answer: {e.Message}"));
        }
    }
}
