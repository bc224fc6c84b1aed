using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Contracts;
using MassTransit;
using MassTransit.Events;
using MassTransit.Metadata;

namespace Engram.Pipeline.Cloud.Pull;

/// <summary>
/// Answers a device's pull with the next page of the target's log. A pull the sender may not make is
/// answered with a <see cref="Fault{T}"/> (a page cannot say "refused"; a request client turns the fault
/// into <see cref="RequestFaultException"/>) and reads nothing; the request is consumed, not dead-lettered.
/// </summary>
public sealed partial class PullMutationsConsumer(PullReader reader, DeviceAuthoriser authoriser, ILogger<PullMutationsConsumer> log)
    : IConsumer<PullMutations>, ICloudQueueConsumer
{
    public static string Queue => WireNames.PullQueue;

    public async Task Consume(ConsumeContext<PullMutations> context)
    {
        var request = context.Message;
        var sender = DeviceAuthoriser.Sender(context);
        if (await authoriser.RefusalAsync(sender, request.TargetKey, request.DeviceId, context.CancellationToken) is { } refusal)
        {
            LogRefused(sender, refusal);
            var reason = new UnauthorizedAccessException($"{RejectionReasons.NotAuthorised}: {refusal}");
            await context.RespondAsync<Fault<PullMutations>>(new FaultEvent<PullMutations>(request, context.MessageId,
                HostMetadataCache.Host, reason, context.SupportedMessageTypes.ToArray()));
            return;
        }
        await context.RespondAsync(await reader.ReadPageAsync(request, context.CancellationToken));
    }

    [LoggerMessage(LogLevel.Warning, "Pull by RabbitMQ user {Sender} refused: {Refusal}")]
    private partial void LogRefused(string? sender, string refusal);
}
