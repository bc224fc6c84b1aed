using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.Device;

/// <summary>
/// Where this device sends its pushes and pulls, which depends on the broker account it uses.
/// <list type="bullet">
/// <item>Its own account (the RabbitMQ user named like the device id, made by
/// <c>engram-pipeline device-user add</c>): the account may touch only the device's own queues and
/// exchanges, so the device sends to its own exchanges, which the operator bound to <c>engram-push</c>
/// and <c>engram-pull</c>, and leaves its TargetAdvanced binding to the operator too.</item>
/// <item>A shared, trusted account (or the in-memory bus): the device declares and binds all it needs itself.</item>
/// </list>
/// </summary>
public sealed record DeviceRoutes(bool OwnAccount, Uri Push, Uri Pull)
{
    /// <summary>The routes of the in-memory bus and of devices on a shared account.</summary>
    public static DeviceRoutes Shared { get; } =
        new(false, new Uri($"queue:{WireNames.PushQueue}"), new Uri($"queue:{WireNames.PullQueue}"));

    /// <summary>The routes of device <paramref name="deviceId"/> connected as <paramref name="brokerUser"/>.</summary>
    public static DeviceRoutes For(string deviceId, string? brokerUser) => brokerUser == deviceId
        ? new(true, new Uri($"exchange:{WireNames.DevicePushExchange(deviceId)}"),
            new Uri($"exchange:{WireNames.DevicePullExchange(deviceId)}"))
        : Shared;
}
