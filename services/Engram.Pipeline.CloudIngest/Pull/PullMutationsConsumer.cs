using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.CloudIngest.Pull;

/// <summary>Answers a device's pull with the next page of the target's log.</summary>
public sealed class PullMutationsConsumer(PullReader reader) : IConsumer<PullMutations>
{
    public async Task Consume(ConsumeContext<PullMutations> context) =>
        await context.RespondAsync(await reader.ReadPageAsync(context.Message, context.CancellationToken));
}
