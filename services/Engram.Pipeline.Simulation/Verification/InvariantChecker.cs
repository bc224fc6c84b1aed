using System.Globalization;
using System.Text.Json;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.Verification;

/// <summary>One invariant's verdict, with the counts behind it.</summary>
public sealed record Verdict(string Name, bool Pass, string Detail);

/// <summary>An Engram database to check: its device id, file, and the projects (targets) it syncs.</summary>
public sealed record DeviceDatabaseRef(string DeviceId, string DatabasePath, IReadOnlyList<string> Projects);

/// <summary>
/// Checks the invariants of DESIGN §4 from the databases alone: the cloud log (read through the cloud store) and each
/// device's Engram database. I6 compares, per project, what sync carries in Engram's own tables: across devices, and
/// with the cloud log folded in seq order (the last mutation of each entity decides it).
/// </summary>
public static class InvariantChecker
{
    private sealed record JournalRow(long Seq, bool Acked, string Disposition);

    private sealed record DeviceTarget(
        string DeviceId, string Project, List<JournalRow> Journal, Dictionary<long, long> Mappings, HashSet<long> Rejected,
        Dictionary<long, string> Applied, long Cursor, EngramSnapshot Snapshot);

    private sealed record CloudLog(long Head, List<CloudMutation> Rows);

    /// <summary>I1–I5 and the cursor rule: what holds once every push is answered.</summary>
    public static async Task<IReadOnlyList<Verdict>> CheckPushAsync(ICloudStore cloud, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var (logs, states) = await ReadAsync(cloud, devices, ct);
        return [NoLoss(states), NoDuplication(logs), PerDeviceOrder(states, logs), MappingsMatchCloud(states, logs), CursorSound(states, logs)];
    }

    /// <summary>I1–I6: everything, at quiescence (every cursor at its head).</summary>
    public static async Task<IReadOnlyList<Verdict>> CheckAllAsync(ICloudStore cloud, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var (logs, states) = await ReadAsync(cloud, devices, ct);
        return
        [
            NoLoss(states), NoDuplication(logs), PerDeviceOrder(states, logs), MappingsMatchCloud(states, logs),
            CursorSound(states, logs), Converged(states, logs),
        ];
    }

    /// <summary>
    /// I1: every journal row Engram has not withdrawn (<c>superseded</c>) ends with exactly one cloud seq, or a recorded
    /// rejection (quarantined, by the cloud's answer or by Engram itself).
    /// </summary>
    private static Verdict NoLoss(List<DeviceTarget> states)
    {
        long total = 0, mapped = 0, rejected = 0, lost = 0, both = 0;
        foreach (var state in states)
        {
            foreach (var row in state.Journal.Where(r => r.Disposition != "superseded"))
            {
                total++;
                var hasMapping = state.Mappings.ContainsKey(row.Seq);
                var isRejected = row.Disposition == "quarantined";
                if (hasMapping && (isRejected || state.Rejected.Contains(row.Seq)))
                {
                    both++;
                }
                else if (hasMapping && row.Acked)
                {
                    mapped++;
                }
                else if (isRejected)
                {
                    rejected++;
                }
                else
                {
                    lost++;
                }
            }
        }
        return new Verdict("I1 no loss", lost == 0 && both == 0,
            $"{total} journaled: {mapped} with a cloud seq, {rejected} rejected with a reason, {lost} lost, {both} both");
    }

    /// <summary>I2: one cloud row per (target, device, local seq), and each target's seqs are exactly 1..head.</summary>
    private static Verdict NoDuplication(Dictionary<string, CloudLog> logs)
    {
        var problems = new List<string>();
        foreach (var (target, log) in logs)
        {
            var duplicates = log.Rows.GroupBy(r => (r.DeviceId, r.LocalSeq)).Count(g => g.Count() > 1);
            var gapFree = log.Rows.Count == log.Head && log.Rows.Select((r, i) => r.CloudSeq == i + 1).All(ok => ok);
            if (duplicates > 0 || !gapFree)
            {
                problems.Add($"{target}: {log.Rows.Count} rows, head {log.Head}, {duplicates} duplicated, seqs {(gapFree ? "1..head" : "NOT 1..head")}");
            }
        }
        return new Verdict("I2 no duplication", problems.Count == 0, problems.Count == 0
            ? $"{logs.Values.Sum(l => l.Rows.Count)} cloud rows over {logs.Count} target(s), each exactly 1..head"
            : string.Join("; ", problems));
    }

    /// <summary>I3: for each device and target, cloud seq order equals local seq order.</summary>
    private static Verdict PerDeviceOrder(List<DeviceTarget> states, Dictionary<string, CloudLog> logs)
    {
        var inversions = 0;
        foreach (var state in states)
        {
            var own = logs[state.Project].Rows.Where(r => r.DeviceId == state.DeviceId).OrderBy(r => r.LocalSeq).ToList();
            inversions += own.Zip(own.Skip(1)).Count(pair => pair.First.CloudSeq >= pair.Second.CloudSeq);
        }
        return new Verdict("I3 per-device order", inversions == 0, $"{inversions} order inversions over {states.Count} device targets");
    }

    /// <summary>I4: each device's mappings equal the cloud's rows for that device.</summary>
    private static Verdict MappingsMatchCloud(List<DeviceTarget> states, Dictionary<string, CloudLog> logs)
    {
        long missing = 0, extra = 0, different = 0, compared = 0;
        foreach (var state in states)
        {
            var cloud = logs[state.Project].Rows.Where(r => r.DeviceId == state.DeviceId).ToDictionary(r => r.LocalSeq, r => r.CloudSeq);
            compared += cloud.Count;
            foreach (var (local, cloudSeq) in cloud)
            {
                if (!state.Mappings.TryGetValue(local, out var mapped))
                {
                    missing++;
                }
                else if (mapped != cloudSeq)
                {
                    different++;
                }
            }
            extra += state.Mappings.Keys.Count(local => !cloud.ContainsKey(local));
        }
        return new Verdict("I4 mappings = cloud", missing + extra + different == 0,
            $"{compared} cloud rows compared: {missing} missing on the device, {extra} extra, {different} different");
    }

    /// <summary>
    /// I5: every other device's seq at or below the cursor was taken in exactly once (<c>pipeline_applied</c> is keyed by
    /// cloud seq), no own mutation was ever taken in from a pull, and no cursor is above its head.
    /// </summary>
    private static Verdict CursorSound(List<DeviceTarget> states, Dictionary<string, CloudLog> logs)
    {
        long untaken = 0, ownTaken = 0, aboveHead = 0, examined = 0;
        foreach (var state in states)
        {
            var log = logs[state.Project];
            if (state.Cursor > log.Head)
            {
                aboveHead++;
            }
            foreach (var row in log.Rows.TakeWhile(r => r.CloudSeq <= state.Cursor))
            {
                examined++;
                if (row.DeviceId != state.DeviceId && !state.Applied.ContainsKey(row.CloudSeq))
                {
                    untaken++;
                }
            }
            ownTaken += state.Applied.Count(a => a.Value == state.DeviceId);
        }
        return new Verdict("I5 cursor soundness", untaken + ownTaken + aboveHead == 0,
            $"cursors {string.Join(", ", states.Select(s => s.Cursor))}; {examined} seqs at or below them: " +
            $"{untaken} of other devices not taken in, {ownTaken} own taken in from a pull, {aboveHead} cursors above head");
    }

    /// <summary>
    /// I6: every cursor is at its head; per project, every device holds the same memories (what sync carries of live
    /// sessions, observations, prompts and relations, and the same deletions), and they are what the cloud log folded in
    /// seq order makes them. An entity whose latest own edit the cloud rejected stays as its device wrote it (the
    /// device does not undo the user's write) and is left out of the comparison; so is one whose pulled mutation waits
    /// on every device for a parent that never came, or is dead on every device (it can never apply: another device
    /// pushed what Engram would not write).
    /// </summary>
    private static Verdict Converged(List<DeviceTarget> states, Dictionary<string, CloudLog> logs)
    {
        var problems = new List<string>();
        long compared = 0, heldBack = 0, unapplied = 0;
        foreach (var project in states.Select(s => s.Project).Distinct())
        {
            var log = logs[project];
            var devices = states.Where(s => s.Project == project).ToList();
            problems.AddRange(devices.Where(d => d.Cursor != log.Head).Select(d => $"{d.DeviceId}/{project}: cursor {d.Cursor} != head {log.Head}"));
            var excluded = devices.SelectMany(d => d.Snapshot.HeldBack).ToHashSet();
            heldBack += excluded.Count;
            var nowhere = devices.Skip(1).Aggregate(devices[0].Snapshot.Unapplied.ToHashSet(), (keys, d) =>
            {
                keys.IntersectWith(d.Snapshot.Unapplied);
                return keys;
            });
            nowhere.ExceptWith(excluded);
            unapplied += nowhere.Count;
            excluded.UnionWith(nowhere);
            var fold = Fold(log);
            var reference = devices[0].Snapshot.Rows;
            foreach (var device in devices)
            {
                compared += device.Snapshot.Rows.Count;
                var fromLog = Differing(fold, device.Snapshot.Core, excluded);
                if (fromLog.Count > 0)
                {
                    problems.Add($"{device.DeviceId}/{project}: {fromLog.Count} entities differ from the folded log, e.g. {fromLog[0].Entity} " +
                                 $"{fromLog[0].Key}: log '{Shorten(fold.GetValueOrDefault(fromLog[0]))}', device '{Shorten(device.Snapshot.Core.GetValueOrDefault(fromLog[0]))}'");
                }
                var fromPeer = Differing(reference, device.Snapshot.Rows, excluded);
                if (fromPeer.Count > 0)
                {
                    problems.Add($"{device.DeviceId}/{project}: {fromPeer.Count} entities differ from {devices[0].DeviceId}'s, e.g. " +
                                 $"{fromPeer[0].Entity} {fromPeer[0].Key}: '{Shorten(reference.GetValueOrDefault(fromPeer[0]))}' there, " +
                                 $"'{Shorten(device.Snapshot.Rows.GetValueOrDefault(fromPeer[0]))}' here");
                }
            }
        }
        return new Verdict("I6 convergence", problems.Count == 0, problems.Count == 0
            ? $"{states.Count} device targets at head, {compared} live memories equal across devices and to the folded log" +
              (heldBack > 0 ? $" ({heldBack} held back by rejected own edits)" : "") +
              (unapplied > 0 ? $" ({unapplied} applied nowhere: waiting for a parent or dead on every device)" : "")
            : string.Join("; ", problems.Take(5)));
    }

    private static List<(string Entity, string Key)> Differing(
        Dictionary<(string Entity, string Key), string> expected, Dictionary<(string Entity, string Key), string> actual, HashSet<(string, string)> excluded) =>
        expected.Keys.Concat(actual.Keys).Distinct().Where(key => !excluded.Contains(key))
            .Where(key => expected.GetValueOrDefault(key) != actual.GetValueOrDefault(key)).ToList();

    private static string? Shorten(string? text) => text is { Length: > 160 } ? text[..160] + "…" : text;

    /// <summary>
    /// The cloud log folded in seq order: each entity as its last mutation leaves it, in <see cref="EngramSnapshot.Core"/>'s
    /// terms (a deleted or soft-deleted memory is not live).
    /// </summary>
    private static Dictionary<(string, string), string> Fold(CloudLog log)
    {
        var last = new Dictionary<(string, string), CloudMutation>();
        foreach (var row in log.Rows)
        {
            last[(row.Entity, row.EntityKey)] = row;
        }
        var fold = new Dictionary<(string, string), string>();
        foreach (var (key, row) in last)
        {
            if (EngramSnapshot.FromPayload(row.Entity, row.Op, row.Payload) is { } state)
            {
                fold[key] = state;
            }
        }
        // A relation is not a live memory when an end is deleted now, nor when a hard delete of an end was placed after
        // the relation's last mutation: that delete orphaned it, and an end brought back later does not undo that.
        var gone = last.Where(l => l.Key.Item1 == "observation" && l.Value.Op == "delete").Select(l => l.Key.Item2).ToHashSet();
        var lastHardDelete = new Dictionary<string, long>();
        foreach (var row in log.Rows.Where(r => r is { Entity: "observation", Op: "delete" }))
        {
            using var payload = JsonDocument.Parse(row.Payload);
            if (payload.RootElement.ValueKind == JsonValueKind.Object && payload.RootElement.TryGetProperty("hard_delete", out var hard)
                && hard.ValueKind == JsonValueKind.True)
            {
                lastHardDelete[row.EntityKey] = row.CloudSeq;
            }
        }
        foreach (var (key, row) in last.Where(l => l.Key.Item1 == "relation"))
        {
            using var payload = JsonDocument.Parse(row.Payload);
            string?[] ends = [Text(payload.RootElement, "source_id"), Text(payload.RootElement, "target_id")];
            if (ends.Any(end => end is not null && (gone.Contains(end) || lastHardDelete.GetValueOrDefault(end) > row.CloudSeq)))
            {
                fold.Remove(key);
            }
        }
        return fold;
    }

    private static async Task<(Dictionary<string, CloudLog>, List<DeviceTarget>)> ReadAsync(
        ICloudStore cloud, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var logs = new Dictionary<string, CloudLog>();
        foreach (var project in devices.SelectMany(d => d.Projects).Distinct())
        {
            var head = await cloud.HeadAsync(project, ct);
            var rows = new List<CloudMutation>();
            while (rows.Count < head)
            {
                // Read as nobody's device, so every row comes with its payload.
                var page = await cloud.ReadAfterAsync(new PullMutations
                {
                    TargetKey = project, DeviceId = "\u0001checker", AfterSeq = rows.Count == 0 ? 0 : rows[^1].CloudSeq, Limit = 5000,
                }, 5000, ct);
                rows.AddRange(page.Where(r => r.CloudSeq <= head));
                if (page.Count == 0)
                {
                    break;
                }
            }
            logs[project] = new CloudLog(head, rows);
        }
        var states = new List<DeviceTarget>();
        foreach (var device in devices)
        {
            foreach (var project in device.Projects)
            {
                states.Add(await ReadDeviceAsync(device, project, ct));
            }
        }
        return (logs, states);
    }

    private static async Task<DeviceTarget> ReadDeviceAsync(DeviceDatabaseRef device, string project, CancellationToken ct)
    {
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction(deferred: true);
        var target = new SyncTarget(project);

        var journal = new List<JournalRow>();
        await ReadAsync(connection, target, """
            SELECT seq, acked_at IS NOT NULL, disposition FROM sync_mutations WHERE target_key = 'cloud' AND project = $project
            """, r => journal.Add(new JournalRow(r.GetInt64(0), r.GetBoolean(1), r.GetString(2))), ct);
        var mappings = new Dictionary<long, long>();
        await ReadAsync(connection, target, "SELECT local_seq, cloud_seq FROM sync_seq_mapping WHERE target_key = $target",
            r => mappings[r.GetInt64(0)] = r.GetInt64(1), ct);
        var rejected = new HashSet<long>();
        await ReadAsync(connection, target, "SELECT local_seq FROM pipeline_rejections WHERE target_key = $target",
            r => rejected.Add(r.GetInt64(0)), ct);
        var applied = new Dictionary<long, string>();
        await ReadAsync(connection, target, "SELECT cloud_seq, origin_device FROM pipeline_applied WHERE target_key = $target",
            r => applied[r.GetInt64(0)] = r.GetString(1), ct);
        long cursor = 0;
        await ReadAsync(connection, target, "SELECT unified_cursor FROM sync_state WHERE target_key = $target", r => cursor = r.GetInt64(0), ct);
        var snapshot = await EngramSnapshot.ReadAsync(connection, project, ct);
        return new DeviceTarget(device.DeviceId, project, journal, mappings, rejected, applied, cursor, snapshot);
    }

    internal static async Task ReadAsync(SqliteConnection connection, SyncTarget target, string sql, Action<SqliteDataReader> row, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Parameters.AddWithValue("$target", target.Key);
        command.Parameters.AddWithValue("$project", target.Project);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            row(reader);
        }
    }

    internal static string Invariant(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A string member of a payload; null when absent, not a string, or the payload is no object.</summary>
    internal static string? Text(JsonElement payload, string name) =>
        payload.ValueKind == JsonValueKind.Object && payload.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;
}
