namespace Engram.Pipeline.Contracts;

/// <summary>Queue names and vocabulary of the wire contract, shared by every service.</summary>
public static class WireNames
{
    /// <summary>The queue cloud ingest consumes <see cref="PushMutations"/> from.</summary>
    public const string PushQueue = "engram-push";

    /// <summary>The queue cloud ingest serves <see cref="PullMutations"/> from.</summary>
    public const string PullQueue = "engram-pull";

    /// <summary>The durable queue a device receives its replies and fan-out events on.</summary>
    public static string DeviceQueue(string deviceId) => $"engram-device-{deviceId}";

    /// <summary>
    /// The exchange a device with its own broker account sends <see cref="PushMutations"/> to; the
    /// operator binds it to <see cref="PushQueue"/>'s exchange, so the device never declares shared entities.
    /// </summary>
    public static string DevicePushExchange(string deviceId) => $"{DeviceQueue(deviceId)}_push";

    /// <summary>The exchange a device with its own broker account sends <see cref="PullMutations"/> to; bound to <see cref="PullQueue"/>'s exchange.</summary>
    public static string DevicePullExchange(string deviceId) => $"{DeviceQueue(deviceId)}_pull";

    /// <summary>The temporary queue a device with its own broker account receives request responses (pull pages) on.</summary>
    public static string DeviceBusQueue(string deviceId) => $"{DeviceQueue(deviceId)}_bus";

    /// <summary>The entity kinds a mutation may name.</summary>
    public static readonly IReadOnlySet<string> Entities = new HashSet<string>(StringComparer.Ordinal)
        { "session", "observation", "prompt", "relation" };

    /// <summary>The operations a mutation may name.</summary>
    public static readonly IReadOnlySet<string> Ops = new HashSet<string>(StringComparer.Ordinal)
        { "upsert", "delete" };
}
