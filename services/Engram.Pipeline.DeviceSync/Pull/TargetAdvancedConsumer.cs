using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Pull;

/// <summary>A target's log grew: if the device syncs that target, pull it now rather than at the next poll.</summary>
public sealed class TargetAdvancedConsumer(TargetSet targets, Wakeup signal) : IConsumer<TargetAdvanced>
{
    public Task Consume(ConsumeContext<TargetAdvanced> context)
    {
        if (targets.Syncs(context.Message.TargetKey))
        {
            targets.MarkAdvanced(context.Message.TargetKey);
            signal.Notify();
        }
        return Task.CompletedTask;
    }
}
