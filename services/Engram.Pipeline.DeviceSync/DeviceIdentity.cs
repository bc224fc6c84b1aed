namespace Engram.Pipeline.DeviceSync;

/// <summary>This device's id (kept in its database) and the target it syncs.</summary>
public sealed record DeviceIdentity(string DeviceId, string Target);
