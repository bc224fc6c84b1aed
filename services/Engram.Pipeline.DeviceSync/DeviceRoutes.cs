using Engram.Pipeline.Contracts;
using Engram.Pipeline.Hosting;

namespace Engram.Pipeline.DeviceSync;

/// <summary>
/// Where this device sends its pushes and pulls and asks for its answers, which depends on the broker
/// account it uses and on the queues' type.
/// <list type="bullet">
/// <item>Its own account (the RabbitMQ user named like the device id, made by
/// <c>engram-pipeline device-user add</c>): the account may touch only the device's own queues and
/// exchanges, so the device sends to its own exchanges, which the operator bound to <c>engram-push</c>
/// and <c>engram-pull</c>, and leaves its TargetAdvanced binding to the operator too.</item>
/// <item>A shared, trusted account (or the in-memory bus): the device declares and binds all it needs itself.</item>
/// </list>
/// A <c>queue:</c> address makes the sender declare the queue, as a classic queue, and a quorum queue
/// refuses that declaration; so with quorum queues every address is the exchange MassTransit binds to
/// the queue (<c>exchange:</c>), and only consumers declare queues.
/// </summary>
public sealed record DeviceRoutes(bool OwnAccount, Uri Push, Uri Pull, Uri Replies)
{
    /// <summary>The routes of device <paramref name="deviceId"/> connected as <paramref name="brokerUser"/> (none on the in-memory bus).</summary>
    public static DeviceRoutes For(string deviceId, string? brokerUser, QueueType queueType = QueueType.Classic)
    {
        var scheme = queueType == QueueType.Quorum ? "exchange" : "queue";
        var replies = new Uri($"{scheme}:{WireNames.DeviceQueue(deviceId)}");
        return brokerUser == deviceId
            ? new(true, new Uri($"exchange:{WireNames.DevicePushExchange(deviceId)}"),
                new Uri($"exchange:{WireNames.DevicePullExchange(deviceId)}"), replies)
            : new(false, new Uri($"{scheme}:{WireNames.PushQueue}"), new Uri($"{scheme}:{WireNames.PullQueue}"), replies);
    }
}
