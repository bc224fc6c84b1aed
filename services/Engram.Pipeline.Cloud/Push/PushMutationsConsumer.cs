using System.Diagnostics;
using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.Cloud.Push;

/// <summary>
/// Ingests a pushed batch from the device it names (else refuses it <c>not-authorised</c>, writing nothing),
/// replies to the pusher, and tells every device the log's head (both sent once the consumer is done: see
/// <see cref="CloudQueueDefinition{TConsumer}"/>).
/// </summary>
public sealed partial class PushMutationsConsumer(
    PushIngestor ingestor, DeviceAuthoriser authoriser, IngestMetrics metrics, ILogger<PushMutationsConsumer> log)
    : IConsumer<PushMutations>, ICloudQueueConsumer
{
    public static string Queue => WireNames.PushQueue;

    public async Task Consume(ConsumeContext<PushMutations> context)
    {
        var batch = context.Message;
        var started = Stopwatch.GetTimestamp();
        var outcome = await authoriser.RefusalAsync(DeviceAuthoriser.Sender(context), batch.TargetKey, batch.DeviceId,
                context.CancellationToken) is { } unauthorised
            ? PushOutcome.Refuse(batch, RejectionReasons.NotAuthorised, unauthorised)
            : await ingestor.IngestAsync(batch, context.CancellationToken);
        metrics.Record(batch, outcome, Stopwatch.GetElapsedTime(started));
        switch (outcome)
        {
            case PushOutcome.Accepted { Reply: var reply, NewRows: var newRows }:
                LogAccepted(batch.TargetKey, batch.DeviceId, batch.PreviousLocalSeq, newRows,
                    reply.Mappings.Count - newRows, reply.Rejected.Count, reply.Head);
                await context.RespondAsync(reply);
                // Also when every row was a duplicate: a retry after the broker lost the first event finds nothing new.
                if (reply.Mappings.Count > 0)
                {
                    await context.Publish(new TargetAdvanced { TargetKey = reply.TargetKey, Head = reply.Head },
                        context.CancellationToken);
                }
                break;
            case PushOutcome.Refused { Reply: var refusal }:
                // A refused batch's keys may be anything (a megabyte, a line break): log them printable and short.
                LogRefused(BatchValidator.Printable(batch.TargetKey), BatchValidator.Printable(batch.DeviceId),
                    batch.PreviousLocalSeq, refusal.Reason, refusal.Detail);
                await context.RespondAsync(refusal);
                break;
        }
    }

    [LoggerMessage(LogLevel.Debug,
        "Push {TargetKey}/{DeviceId} after {PreviousLocalSeq}: {NewRows} new, {Duplicates} duplicate, {Rejected} rejected, head {Head}")]
    private partial void LogAccepted(string targetKey, string deviceId, long previousLocalSeq, int newRows,
        int duplicates, int rejected, long head);

    [LoggerMessage(LogLevel.Information, "Push {TargetKey}/{DeviceId} after {PreviousLocalSeq} refused: {Reason} ({Detail})")]
    private partial void LogRefused(string targetKey, string deviceId, long previousLocalSeq, string reason, string detail);
}
