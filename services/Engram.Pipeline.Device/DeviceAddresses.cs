using Engram.Pipeline.Contracts;
using Engram.Pipeline.Hosting;

namespace Engram.Pipeline.Device;

/// <summary>
/// Where a device sends its batches and pull requests, and where it asks for its answers. A <c>queue:</c>
/// address makes the sender declare the queue, as a classic queue, and a quorum queue refuses that
/// declaration; so with quorum queues a device sends through the exchange that MassTransit binds to each
/// queue (<c>exchange:</c>) and leaves declaring the queues to their consumers.
/// </summary>
public sealed record DeviceAddresses(Uri Push, Uri Pull, Uri Replies)
{
    public static DeviceAddresses For(string deviceId, QueueType queueType)
    {
        var scheme = queueType == QueueType.Quorum ? "exchange" : "queue";
        return new DeviceAddresses(
            new Uri($"{scheme}:{WireNames.PushQueue}"),
            new Uri($"{scheme}:{WireNames.PullQueue}"),
            new Uri($"{scheme}:{WireNames.DeviceQueue(deviceId)}"));
    }
}
