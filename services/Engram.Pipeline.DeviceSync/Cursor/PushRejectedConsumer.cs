using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>
/// The cloud refused a whole batch. A batch that overtook its predecessor is sent again right away
/// (after the batches before it); any other refusal is kept for status and the batch is retried
/// after the publisher's resend timeout, so the rows stay pending and nothing is lost.
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
        await cursor.RecordRefusalAsync(refusal, context.CancellationToken);
        LogRefused(refusal.Reason, refusal.Detail);
    }

    [LoggerMessage(LogLevel.Debug, "Batch overtook its predecessor (cloud is at local seq {Expected}); sending it again")]
    private partial void LogOutOfOrder(long? expected);

    [LoggerMessage(LogLevel.Error, "The cloud refused a batch: {Reason} ({Detail}); it stays pending and is retried")]
    private partial void LogRefused(string reason, string detail);
}
