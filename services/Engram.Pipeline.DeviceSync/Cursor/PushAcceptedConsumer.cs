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
        var ignoredConflicts = await cursor.ApplyAcceptedAsync(reply, context.CancellationToken);
        if (context.RequestId is { } batchId)
        {
            targets.Window(reply.TargetKey).Answered(batchId);
        }
        signal.Notify();
        LogAccepted(reply.Mappings.Count, reply.Rejected.Count, reply.Head);
        if (ignoredConflicts > 0)
        {
            LogWithdrawnConflicts(ignoredConflicts);
        }
    }

    [LoggerMessage(LogLevel.Debug, "Batch answered: {Mapped} mapped, {Rejected} rejected, head {Head}")]
    private partial void LogAccepted(int mapped, int rejected, long head);

    [LoggerMessage(LogLevel.Debug,
        "{Count} conflict rejection(s) for rows Engram withdrew before they were placed not recorded: a delayed copy of a batch, not a reset database")]
    private partial void LogWithdrawnConflicts(int count);
}
