using Engram.Pipeline.Hosting;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>
/// The current run of failures of the answers on the device's queue (PushAccepted, PushRejected), as health reports
/// it: every retry since the last answer the database took, across answers. An answer that goes through after a
/// retry ends the run.
/// </summary>
public sealed class AnswerRetries(TimeProvider clock) : IRetryObserver
{
    private volatile FailureRun? _failing;

    /// <summary>The retries since the last answer that went through after one, or null while answers go through.</summary>
    public FailureRun? Failing => _failing;

    public Task PreRetry<T>(RetryContext<T> context) where T : class, PipeContext
    {
        var run = _failing;
        _failing = new FailureRun((run?.Attempts ?? 0) + 1, run?.Since ?? clock.GetUtcNow(), context.Exception.Message,
            context.Delay ?? TimeSpan.Zero);
        return Task.CompletedTask;
    }

    public Task RetryComplete<T>(RetryContext<T> context) where T : class, PipeContext
    {
        _failing = null;
        return Task.CompletedTask;
    }

    public Task PostCreate<T>(RetryPolicyContext<T> context) where T : class, PipeContext => Task.CompletedTask;

    public Task PostFault<T>(RetryContext<T> context) where T : class, PipeContext => Task.CompletedTask;

    public Task RetryFault<T>(RetryContext<T> context) where T : class, PipeContext => Task.CompletedTask;
}
