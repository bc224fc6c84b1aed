using System.Collections.Concurrent;
using Engram.Pipeline.DeviceSync.Apply;
using Engram.Pipeline.DeviceSync.Publisher;
using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync;

/// <summary>
/// The projects the device syncs: the one <see cref="DeviceOptions.Target"/> names, or every project enrolled in
/// Engram's sync (<c>sync_enrolled_projects</c>), read again on every round, so that a project enrolled while the
/// device runs starts syncing without a restart. Each has its window of batches in flight and a flag that its log grew.
/// </summary>
public sealed class TargetSet(EngramDatabase database, DeviceOptions options)
{
    private readonly ConcurrentDictionary<string, InFlightWindow> _windows = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _advanced = new(StringComparer.Ordinal);
    private volatile IReadOnlyList<SyncTarget> _current = [];

    /// <summary>The targets of the last <see cref="RefreshAsync"/>.</summary>
    public IReadOnlyList<SyncTarget> Current => _current;

    /// <summary>Reads which projects to sync now.</summary>
    public async Task<IReadOnlyList<SyncTarget>> RefreshAsync(CancellationToken ct)
    {
        if (!string.IsNullOrWhiteSpace(options.Target))
        {
            // Upstream journals and enrolls a project under its normalised name: Team is project team.
            return _current = [new SyncTarget(EngramRules.NormalizeProject(options.Target))];
        }
        await using var connection = await database.OpenAsync(ct);
        await using var select = connection.CreateCommand();
        // Upstream refuses to send a row of a blank or padded project name; so does the device.
        select.CommandText = "SELECT project FROM sync_enrolled_projects WHERE project <> '' AND project = trim(project) ORDER BY project";
        var targets = new List<SyncTarget>();
        await using (var reader = await select.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                targets.Add(new SyncTarget(reader.GetString(0)));
            }
        }
        return _current = targets;
    }

    /// <summary>Whether the device syncs <paramref name="project"/>.</summary>
    public bool Syncs(string project) => _current.Any(t => t.Project == project);

    /// <summary>The batches of <paramref name="project"/> sent and not yet answered.</summary>
    public InFlightWindow Window(string project) => _windows.GetOrAdd(project, _ => new InFlightWindow());

    /// <summary>Forgets every batch in flight, so that everything unanswered is sent again from the journal.</summary>
    public void ClearWindows()
    {
        foreach (var window in _windows.Values)
        {
            window.Clear();
        }
    }

    /// <summary>The target's log grew (TargetAdvanced).</summary>
    public void MarkAdvanced(string project) => _advanced[project] = true;

    /// <summary>Whether the target's log grew since the last call, clearing the flag.</summary>
    public bool TakeAdvanced(string project) => _advanced.TryRemove(project, out _);
}
