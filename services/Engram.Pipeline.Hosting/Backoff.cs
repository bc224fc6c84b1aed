namespace Engram.Pipeline.Hosting;

/// <summary>A loop's current run of failures, as health reports it.</summary>
public sealed record FailureRun(int Attempts, DateTimeOffset Since, string LastError, TimeSpan NextDelay);

/// <summary>
/// Bounded exponential back-off for a loop that retries on its own when the broker or a database is
/// away: the first delay, then twice as long each time up to the cap, and back to the start after a
/// success. It keeps the current run of failures so that health checks can report it.
/// </summary>
public sealed class Backoff(TimeSpan first, TimeSpan max)
{
    private volatile FailureRun? _failing;

    /// <summary>The failures since the last success, or null while the loop works.</summary>
    public FailureRun? Failing => _failing;

    /// <summary>Records a failure and returns how long to wait before trying again.</summary>
    public TimeSpan Failed(Exception error, DateTimeOffset now)
    {
        var attempts = (_failing?.Attempts ?? 0) + 1;
        var delay = TimeSpan.FromTicks(Math.Min(max.Ticks, first.Ticks << Math.Min(attempts - 1, 30)));
        _failing = new FailureRun(attempts, _failing?.Since ?? now, error.Message, delay);
        return delay;
    }

    public void Succeeded() => _failing = null;
}
