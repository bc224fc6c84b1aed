namespace Engram.Pipeline.Hosting;

/// <summary>A loop's current run of failures, as health reports it.</summary>
public sealed record FailureRun(int Attempts, DateTimeOffset Since, string LastError, TimeSpan NextDelay);

/// <summary>
/// Bounded exponential back-off with jitter for a loop that retries on its own when the broker or a database is
/// away. The ceiling starts at <c>first</c> and doubles with each failure up to <c>max</c>; each delay is drawn
/// between half the ceiling and the ceiling, so that a fleet that lost the broker at the same moment does not come
/// back in lockstep. A success starts again from <c>first</c>. It keeps the current run of failures for health checks.
/// </summary>
public sealed class Backoff(TimeSpan first, TimeSpan max, Random? random = null)
{
    private readonly Random _random = random ?? Random.Shared;
    private volatile FailureRun? _failing;

    /// <summary>The failures since the last success, or null while the loop works.</summary>
    public FailureRun? Failing => _failing;

    /// <summary>Records a failure and returns how long to wait before trying again.</summary>
    public TimeSpan Failed(Exception error, DateTimeOffset now)
    {
        var attempts = (_failing?.Attempts ?? 0) + 1;
        var ceiling = Math.Min(max.Ticks, first.Ticks << Math.Min(attempts - 1, 30));
        var delay = TimeSpan.FromTicks(ceiling / 2 + _random.NextInt64(ceiling / 2 + 1));
        _failing = new FailureRun(attempts, _failing?.Since ?? now, error.Message, delay);
        return delay;
    }

    public void Succeeded() => _failing = null;
}
