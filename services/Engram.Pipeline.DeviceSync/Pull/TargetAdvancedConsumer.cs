using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Pull;

/// <summary>A target's log grew: if it is this device's target, pull now rather than at the next poll.</summary>
public sealed class TargetAdvancedConsumer(DeviceIdentity identity, Wakeup signal) : IConsumer<TargetAdvanced>
{
    public Task Consume(ConsumeContext<TargetAdvanced> context)
    {
        if (context.Message.TargetKey == identity.Target)
        {
            signal.Notify();
        }
        return Task.CompletedTask;
    }
}
