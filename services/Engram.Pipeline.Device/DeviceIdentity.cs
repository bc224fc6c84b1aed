namespace Engram.Pipeline.Device;

/// <summary>
/// This device's id and target. The id lives in the device database, so it is known only once
/// <see cref="DeviceStartup"/> has opened it; everything that needs it starts after that.
/// </summary>
public sealed class DeviceIdentity(string target)
{
    private string? _deviceId;

    public string Target { get; } = target;

    public string DeviceId => _deviceId
        ?? throw new InvalidOperationException("The device database has not been opened yet.");

    internal void Assign(string deviceId) => _deviceId = deviceId;
}
