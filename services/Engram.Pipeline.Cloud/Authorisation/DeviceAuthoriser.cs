using Engram.Pipeline.Cloud.Storage;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Cloud.Authorisation;

/// <summary>
/// Decides whether a push or a pull may act for the device and target it names
/// (<see cref="IngestOptions.AuthoriseDevices"/>). The sender is the message's AMQP <c>user_id</c>, which
/// RabbitMQ lets through only when it is the connection's own user; a device's user is named like the
/// device. The operator grants targets in <c>cloud_device_grants</c>.
/// </summary>
public sealed class DeviceAuthoriser(ICloudStore store, IOptions<IngestOptions> options)
{
    /// <summary>Why the sender may not act as <paramref name="deviceId"/> on <paramref name="targetKey"/>; null when it may.</summary>
    public async Task<string?> RefusalAsync(string? sender, string? targetKey, string? deviceId, CancellationToken ct)
    {
        if (!options.Value.AuthoriseDevices)
        {
            return null;
        }
        if (string.IsNullOrEmpty(sender))
        {
            return "the message carries no AMQP user_id, so its sender is unknown";
        }
        // The names are the sender's own: only the broker-checked user is echoed back.
        if (sender != deviceId)
        {
            return $"RabbitMQ user '{sender}' may act only as device '{sender}'";
        }
        if (targetKey is null || !await store.IsGrantedAsync(targetKey, deviceId, ct))
        {
            return $"device '{sender}' is not granted the target it names";
        }
        return null;
    }

    /// <summary>The AMQP <c>user_id</c> of the message being consumed; null on a transport that has none.</summary>
    public static string? Sender(ConsumeContext context) =>
        context.ReceiveContext.TryGetPayload<RabbitMqBasicConsumeContext>(out var rabbit) ? rabbit.Properties.UserId : null;
}
