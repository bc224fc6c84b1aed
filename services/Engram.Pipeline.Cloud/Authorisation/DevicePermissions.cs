using System.Text.RegularExpressions;
using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.Cloud.Authorisation;

/// <summary>
/// The RabbitMQ permissions (configure, write, read regular expressions) of a device's own account:
/// the device's own queues and exchanges, named by <see cref="WireNames"/>, and nothing shared. It can
/// neither read <c>engram-push</c> nor another device's queue, nor declare, delete or bind anything shared;
/// its pushes and pulls reach the cloud only through the bindings the operator made.
/// </summary>
public sealed record DevicePermissions(string Configure, string Write, string Read)
{
    /// <summary>Longest device id an own account may have.</summary>
    public const int MaxDeviceIdLength = 200;

    public static DevicePermissions For(string deviceId)
    {
        if (DeviceIdProblem(deviceId) is { } problem)
        {
            throw new ArgumentException($"Device id '{deviceId}' {problem}", nameof(deviceId));
        }
        var queue = WireNames.DeviceQueue(deviceId);
        // MassTransit's error and dead-letter queues of the device's queue, declared on first use.
        string[] received = [queue, $"{queue}_error", $"{queue}_skipped", WireNames.DeviceBusQueue(deviceId)];
        string[] sent = [WireNames.DevicePushExchange(deviceId), WireNames.DevicePullExchange(deviceId)];
        return new DevicePermissions(Exactly([.. received, .. sent]), Exactly([.. received, .. sent]), Exactly(received));
    }

    /// <summary>
    /// Why a device id cannot have an own account, or null. Letters, digits, '.' and '-' only: with no
    /// '_', no device's names can be another device's name plus a suffix, so the permissions never overlap.
    /// </summary>
    public static string? DeviceIdProblem(string deviceId)
    {
        if (deviceId.Length is 0 or > MaxDeviceIdLength)
        {
            return $"must be 1 to {MaxDeviceIdLength} characters";
        }
        return deviceId.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-') && char.IsAsciiLetterOrDigit(deviceId[0])
            ? null
            : "may hold only ASCII letters, digits, '.' and '-', and must start with a letter or digit";
    }

    private static string Exactly(IEnumerable<string> names) => $"^({string.Join('|', names.Select(Regex.Escape))})$";
}
