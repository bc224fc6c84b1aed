namespace Engram.Pipeline.Testing;

/// <summary>Waiting on a condition with a deadline, never a fixed sleep.</summary>
public static class Condition
{
    /// <summary>
    /// Polls <paramref name="condition"/> every 100 ms until it holds; after <paramref name="deadline"/>
    /// fails with <paramref name="what"/> and, if given, the <paramref name="state"/> of things then.
    /// </summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan deadline, string what, Func<Task<string>>? state = null)
    {
        using var timeout = new CancellationTokenSource(deadline);
        while (!await condition())
        {
            try
            {
                await Task.Delay(100, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"Not within {deadline.TotalSeconds:0} s: {what}." + (state is null ? "" : $" ({await state()})"));
            }
        }
    }
}
