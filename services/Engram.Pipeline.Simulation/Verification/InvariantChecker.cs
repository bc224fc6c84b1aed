using System.Text.Json.Nodes;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Contracts;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.Verification;

/// <summary>One invariant's verdict, with the counts behind it.</summary>
public sealed record Verdict(string Name, bool Pass, string Detail);

/// <summary>A device database to check: its id, target and SQLite file.</summary>
public sealed record DeviceDatabaseRef(string DeviceId, string Target, string DatabasePath);

/// <summary>
/// Checks the invariants of DESIGN §4 from the databases alone: the cloud log (read through the
/// cloud store) and each device's SQLite file. I6 compares every device's entities with a model:
/// the cloud log folded in seq order.
/// </summary>
public static class InvariantChecker
{
    private sealed record JournalRow(long Seq, bool Acked, bool Rejected, string? Reason);

    private sealed record Entity(string Payload, bool Deleted, long? CloudSeq);

    private sealed record DeviceState(
        DeviceDatabaseRef Device, List<JournalRow> Journal, Dictionary<long, long> Mappings,
        Dictionary<long, int> Applied, HashSet<string> AppliedOwnOrigin, long Cursor, Dictionary<(string, string), Entity> Entities);

    /// <summary>I1–I4 and the cursor rule: what holds once every push is answered.</summary>
    public static async Task<IReadOnlyList<Verdict>> CheckPushAsync(
        ICloudStore cloud, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var (logs, states) = await ReadAsync(cloud, devices, ct);
        return [NoLoss(states), NoDuplication(logs), PerDeviceOrder(states, logs), MappingsMatchCloud(states, logs), CursorSound(states, logs)];
    }

    /// <summary>I1–I6: everything, at quiescence (every cursor at its head).</summary>
    public static async Task<IReadOnlyList<Verdict>> CheckAllAsync(
        ICloudStore cloud, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var (logs, states) = await ReadAsync(cloud, devices, ct);
        return
        [
            NoLoss(states), NoDuplication(logs), PerDeviceOrder(states, logs), MappingsMatchCloud(states, logs),
            CursorSound(states, logs), Converged(states, logs),
        ];
    }

    /// <summary>I1: every journaled mutation has exactly one cloud seq or a recorded rejection.</summary>
    private static Verdict NoLoss(List<DeviceState> states)
    {
        long total = 0, mapped = 0, rejected = 0, lost = 0, both = 0;
        foreach (var state in states)
        {
            foreach (var row in state.Journal)
            {
                total++;
                var hasMapping = state.Mappings.ContainsKey(row.Seq);
                if (hasMapping && row.Rejected)
                {
                    both++;
                }
                else if (hasMapping && row.Acked)
                {
                    mapped++;
                }
                else if (row.Rejected && row.Reason is not null)
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

    /// <summary>I3: for each device, cloud seq order equals local seq order.</summary>
    private static Verdict PerDeviceOrder(List<DeviceState> states, Dictionary<string, CloudLog> logs)
    {
        var inversions = 0;
        foreach (var state in states)
        {
            var own = logs[state.Device.Target].Rows.Where(r => r.DeviceId == state.Device.DeviceId).OrderBy(r => r.LocalSeq).ToList();
            inversions += own.Zip(own.Skip(1)).Count(pair => pair.First.CloudSeq >= pair.Second.CloudSeq);
        }
        return new Verdict("I3 per-device order", inversions == 0, $"{inversions} order inversions over {states.Count} devices");
    }

    /// <summary>I4: each device's mappings equal the cloud's rows for that device.</summary>
    private static Verdict MappingsMatchCloud(List<DeviceState> states, Dictionary<string, CloudLog> logs)
    {
        long missing = 0, extra = 0, different = 0, compared = 0;
        foreach (var state in states)
        {
            var cloud = logs[state.Device.Target].Rows.Where(r => r.DeviceId == state.Device.DeviceId)
                .ToDictionary(r => r.LocalSeq, r => r.CloudSeq);
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
    /// I5: every other device's seq at or below the cursor was applied exactly once; no own mutation was
    /// ever applied from a pull; the cursor is never above the head.
    /// </summary>
    private static Verdict CursorSound(List<DeviceState> states, Dictionary<string, CloudLog> logs)
    {
        long unapplied = 0, twice = 0, ownApplied = 0, aboveHead = 0, examined = 0;
        foreach (var state in states)
        {
            var log = logs[state.Device.Target];
            if (state.Cursor > log.Head)
            {
                aboveHead++;
            }
            foreach (var row in log.Rows.TakeWhile(r => r.CloudSeq <= state.Cursor))
            {
                examined++;
                if (row.DeviceId == state.Device.DeviceId)
                {
                    continue;
                }
                var times = state.Applied.GetValueOrDefault(row.CloudSeq);
                unapplied += times == 0 ? 1 : 0;
                twice += times > 1 ? 1 : 0;
            }
            ownApplied += state.AppliedOwnOrigin.Count;
        }
        return new Verdict("I5 cursor soundness", unapplied + twice + ownApplied + aboveHead == 0,
            $"cursors {string.Join(", ", states.Select(s => s.Cursor))}; {examined} seqs at or below them: " +
            $"{unapplied} foreign not applied, {twice} applied twice, {ownApplied} own applied from a pull, {aboveHead} cursors above head");
    }

    /// <summary>I6: every cursor is at the head and every device holds the entities the folded cloud log holds.</summary>
    private static Verdict Converged(List<DeviceState> states, Dictionary<string, CloudLog> logs)
    {
        var problems = new List<string>();
        var models = logs.ToDictionary(l => l.Key, l => Fold(l.Value));
        foreach (var state in states)
        {
            var log = logs[state.Device.Target];
            if (state.Cursor != log.Head)
            {
                problems.Add($"{state.Device.DeviceId}: cursor {state.Cursor} != head {log.Head}");
            }
            var model = models[state.Device.Target];
            var differing = model.Keys.Union(state.Entities.Keys)
                .Count(key => !(model.TryGetValue(key, out var m) && state.Entities.TryGetValue(key, out var d) && m == d));
            if (differing > 0)
            {
                problems.Add($"{state.Device.DeviceId}: {differing} of {model.Count} entities differ from the folded log");
            }
        }
        return new Verdict("I6 convergence", problems.Count == 0, problems.Count == 0
            ? $"{states.Count} devices at head, each holding the {models.Values.Sum(m => m.Count)} entities of the folded log"
            : string.Join("; ", problems.Take(5)));
    }

    /// <summary>The model: the cloud log folded in seq order, by the rules the devices apply.</summary>
    private static Dictionary<(string, string), Entity> Fold(CloudLog log)
    {
        var entities = new Dictionary<(string, string), Entity>();
        foreach (var row in log.Rows)
        {
            var key = (row.Entity, row.EntityKey);
            if (row.Op == "delete" && DeviceSync.Journal.DeviceJournal.IsHardDelete(row.Payload))
            {
                entities.Remove(key);
            }
            else
            {
                entities[key] = new Entity(Canonical(row.Payload), row.Op == "delete", row.CloudSeq);
            }
        }
        return entities;
    }

    /// <summary>JSON with object keys sorted and no spacing: PostgreSQL's jsonb hands back its own formatting.</summary>
    private static string Canonical(string json)
    {
        try
        {
            return Sort(JsonNode.Parse(json))?.ToJsonString() ?? "null";
        }
        catch (System.Text.Json.JsonException)
        {
            return json;
        }

        static JsonNode? Sort(JsonNode? node) => node switch
        {
            JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal)
                .Select(p => KeyValuePair.Create(p.Key, Sort(p.Value)))),
            JsonArray a => new JsonArray(a.Select(Sort).ToArray()),
            _ => node?.DeepClone(),
        };
    }

    private sealed record CloudLog(long Head, List<CloudMutation> Rows);

    private static async Task<(Dictionary<string, CloudLog>, List<DeviceState>)> ReadAsync(
        ICloudStore cloud, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var logs = new Dictionary<string, CloudLog>();
        foreach (var target in devices.Select(d => d.Target).Distinct())
        {
            var head = await cloud.HeadAsync(target, ct);
            var rows = new List<CloudMutation>();
            while (true)
            {
                // Read as nobody's device, so every row comes with its payload.
                var page = await cloud.ReadAfterAsync(new PullMutations
                {
                    TargetKey = target, DeviceId = "\u0001checker", AfterSeq = rows.Count == 0 ? 0 : rows[^1].CloudSeq, Limit = 5000,
                }, 5000, ct);
                rows.AddRange(page.Where(r => r.CloudSeq <= head));
                if (page.Count < 5000 || rows[^1].CloudSeq >= head)
                {
                    break;
                }
            }
            logs[target] = new CloudLog(head, rows);
        }
        var states = new List<DeviceState>();
        foreach (var device in devices)
        {
            states.Add(await ReadDeviceAsync(device, ct));
        }
        return (logs, states);
    }

    private static async Task<DeviceState> ReadDeviceAsync(DeviceDatabaseRef device, CancellationToken ct)
    {
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
        await connection.OpenAsync(ct);
        await using var transaction = connection.BeginTransaction(deferred: true);

        var journal = new List<JournalRow>();
        await ReadAsync(connection, device.Target, """
            SELECT seq, acked_at IS NOT NULL, rejected_at IS NOT NULL, reject_reason
            FROM sync_mutations WHERE target_key = $t AND source = 'local'
            """, r => journal.Add(new JournalRow(r.GetInt64(0), r.GetBoolean(1), r.GetBoolean(2), r.IsDBNull(3) ? null : r.GetString(3))), ct);

        var mappings = new Dictionary<long, long>();
        await ReadAsync(connection, device.Target, "SELECT local_seq, cloud_seq FROM sync_seq_mapping WHERE target_key = $t",
            r => mappings[r.GetInt64(0)] = r.GetInt64(1), ct);

        var applied = new Dictionary<long, int>();
        var ownOrigin = new HashSet<string>();
        await ReadAsync(connection, device.Target, """
            SELECT cloud_seq, origin_device FROM sync_mutations WHERE target_key = $t AND source = 'remote'
            """, r =>
            {
                applied[r.GetInt64(0)] = applied.GetValueOrDefault(r.GetInt64(0)) + 1;
                if (r.GetString(1) == device.DeviceId)
                {
                    ownOrigin.Add(r.GetInt64(0).ToString(System.Globalization.CultureInfo.InvariantCulture));
                }
            }, ct);

        long cursor = 0;
        await ReadAsync(connection, device.Target, "SELECT unified_cursor FROM sync_state WHERE target_key = $t",
            r => cursor = r.GetInt64(0), ct);

        var entities = new Dictionary<(string, string), Entity>();
        await ReadAsync(connection, device.Target, "SELECT entity, entity_key, payload, deleted, cloud_seq FROM entities WHERE target_key = $t",
            r => entities[(r.GetString(0), r.GetString(1))] = new Entity(Canonical(r.GetString(2)), r.GetBoolean(3),
                r.IsDBNull(4) ? null : r.GetInt64(4)), ct);
        return new DeviceState(device, journal, mappings, applied, ownOrigin, cursor, entities);
    }

    private static async Task ReadAsync(SqliteConnection connection, string target, string sql, Action<SqliteDataReader> row, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Parameters.AddWithValue("$t", target);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            row(reader);
        }
    }
}
