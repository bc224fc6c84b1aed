namespace Engram.Pipeline.Device;

/// <summary>
/// Wakes a loop early: the publisher when a row is recorded or a batch is answered, the puller when
/// the target's log grows. Each loop still polls on its own, so a missed wake-up only delays it.
/// </summary>
public sealed class Wakeup
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

    /// <summary>Waits for a wake-up or the timeout, whichever comes first.</summary>
    public Task WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) => _signal.WaitAsync(timeout, cancellationToken);
}
