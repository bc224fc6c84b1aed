namespace Engram.Pipeline.DeviceSync;

/// <summary>This device's id, kept in its Engram database.</summary>
public sealed record DeviceIdentity(string DeviceId);

/// <summary>
/// One shared log the device syncs: an Engram project. On the wire its target key is the project's name; in the
/// Engram database its rows are keyed by upstream's per-project key <c>cloud:&lt;project&gt;</c>.
/// </summary>
public sealed record SyncTarget(string Project)
{
    /// <summary>Upstream's per-project key: <c>sync_state</c>, and the pipeline's tables.</summary>
    public string Key => LocalKey(Project);

    /// <summary>The local key of <paramref name="project"/>.</summary>
    public static string LocalKey(string project) => "cloud:" + project;

    public override string ToString() => Project;
}
