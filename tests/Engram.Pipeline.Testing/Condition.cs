namespace Engram.Pipeline.Testing;

/// <summary>Waiting on a condition with a deadline, never a fixed sleep.</summary>
public static class Condition
{
    private static readonly TimeSpan _defaultInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Polls <paramref name="condition"/> (every 100 ms unless <paramref name="interval"/> says otherwise) until it
    /// holds; after <paramref name="deadline"/> fails with <paramref name="what"/> and, if given, the
    /// <paramref name="state"/> of things then.
    /// </summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan deadline, string what,
        Func<Task<string>>? state = null, TimeSpan? interval = null)
    {
        if (!await PollUntilAsync(condition, deadline, interval))
        {
            throw new TimeoutException($"Not within {deadline.TotalSeconds:0} s: {what}." + (state is null ? "" : $" ({await state()})"));
        }
    }

    /// <inheritdoc cref="WaitUntilAsync(Func{Task{bool}}, TimeSpan, string, Func{Task{string}}?, TimeSpan?)"/>
    public static Task WaitUntilAsync(Func<bool> condition, TimeSpan deadline, string what, TimeSpan? interval = null) =>
        WaitUntilAsync(() => Task.FromResult(condition()), deadline, what, state: null, interval);

    /// <summary>Polls <paramref name="condition"/> until it holds or <paramref name="deadline"/> passes; returns whether it held.</summary>
    public static async Task<bool> PollUntilAsync(Func<Task<bool>> condition, TimeSpan deadline, TimeSpan? interval = null)
    {
        using var timeout = new CancellationTokenSource(deadline);
        while (!await condition())
        {
            try
            {
                await Task.Delay(interval ?? _defaultInterval, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                return await condition();
            }
        }
        return true;
    }
}
