using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>
/// The cloud refused a whole batch. A batch that overtook its predecessor is sent again right away (after the
/// batches before it); one too large for the cloud's limits is sent again at once in batches half its size. Any
/// other refusal (or a batch of one still too large) is kept for status and the batch is retried after the
/// publisher's resend timeout, so the rows stay pending and nothing is lost.
/// </summary>
public sealed partial class PushRejectedConsumer(
    CursorService cursor, TargetSet targets, Wakeup signal, ILogger<PushRejectedConsumer> log)
    : IConsumer<PushRejected>
{
    public async Task Consume(ConsumeContext<PushRejected> context)
    {
        var refusal = context.Message;
        if (refusal.Reason == RejectionReasons.OutOfOrder)
        {
            if (context.RequestId is { } batchId)
            {
                targets.Window(refusal.TargetKey).Resend(batchId);
            }
            LogOutOfOrder(refusal.ExpectedPreviousLocalSeq);
            signal.Notify();
            return;
        }
        if (refusal.Reason == RejectionReasons.BatchTooLarge && context.RequestId is { } tooLarge
            && targets.Window(refusal.TargetKey).Shrink(tooLarge) is { } limit)
        {
            LogShrunk(refusal.TargetKey, refusal.Detail, limit);
            signal.Notify();
            return;
        }
        await cursor.RecordRefusalAsync(refusal, context.CancellationToken);
        LogRefused(refusal.Reason, refusal.Detail);
    }

    [LoggerMessage(LogLevel.Warning, "The cloud refused a batch of {Target} as too large ({Detail}); sending it again in batches of at most {Limit}")]
    private partial void LogShrunk(string target, string detail, int limit);

    [LoggerMessage(LogLevel.Debug, "Batch overtook its predecessor (cloud is at local seq {Expected}); sending it again")]
    private partial void LogOutOfOrder(long? expected);

    [LoggerMessage(LogLevel.Error, "The cloud refused a batch: {Reason} ({Detail}); it stays pending and is retried")]
    private partial void LogRefused(string reason, string detail);
}
