namespace Engram.Pipeline.DeviceSync;

/// <summary>
/// Wakes a loop early: the publisher when a row is recorded or a batch is answered, the puller when
/// the target's log grows. Each loop still polls on its own, so a missed wake-up only delays it.
/// </summary>
public sealed class Wakeup(TimeProvider clock)
{
    private readonly SemaphoreSlim _signal = new(0, 1);

    public void Notify()
    {
        try
        {
            _signal.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already signalled; one wake-up is enough.
        }
    }

    /// <summary>
    /// Waits for a wake-up, the timeout (on the clock's time) or <paramref name="stopping"/>, whichever comes first;
    /// none of them is an error: the loop that waits checks its own token.
    /// </summary>
    public async Task WaitAsync(TimeSpan timeout, CancellationToken stopping)
    {
        using var timedOut = new CancellationTokenSource(timeout, clock);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(stopping, timedOut.Token);
        // A cancelled wait leaves the signal as it was.
        await _signal.WaitAsync(either.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}
