using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Cursor;

/// <summary>The cloud committed a batch: record its mappings and rejections, then let the publisher go on.</summary>
public sealed partial class PushAcceptedConsumer(
    CursorService cursor, TargetSet targets, Wakeup signal, ILogger<PushAcceptedConsumer> log)
    : IConsumer<PushAccepted>
{
    public async Task Consume(ConsumeContext<PushAccepted> context)
    {
        var reply = context.Message;
        await cursor.ApplyAcceptedAsync(reply, context.CancellationToken);
        if (context.RequestId is { } batchId)
        {
            targets.Window(reply.TargetKey).Answered(batchId);
        }
        signal.Notify();
        LogAccepted(reply.Mappings.Count, reply.Rejected.Count, reply.Head);
    }

    [LoggerMessage(LogLevel.Debug, "Batch answered: {Mapped} mapped, {Rejected} rejected, head {Head}")]
    private partial void LogAccepted(int mapped, int rejected, long head);
}
