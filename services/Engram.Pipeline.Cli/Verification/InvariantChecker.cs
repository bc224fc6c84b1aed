using Microsoft.Data.Sqlite;
using Npgsql;

namespace Engram.Pipeline.Cli.Verification;

/// <summary>One invariant's verdict, with the counts behind it.</summary>
public sealed record Verdict(string Name, bool Pass, string Detail);

/// <summary>A device database to check: its id, target and SQLite file.</summary>
public sealed record DeviceDatabaseRef(string DeviceId, string Target, string DatabasePath);

/// <summary>
/// Checks the invariants of DESIGN §4 from the databases alone: the cloud's tables and each
/// device's SQLite file, read after the pipeline has settled.
/// </summary>
public static class InvariantChecker
{
    private sealed record CloudRow(string DeviceId, long LocalSeq, long CloudSeq);

    private sealed record JournalRow(long Seq, bool Acked, bool Rejected, string? Reason);

    private sealed record DeviceState(
        DeviceDatabaseRef Device, List<JournalRow> Journal, Dictionary<long, long> Mappings, long Cursor);

    public static async Task<IReadOnlyList<Verdict>> CheckPushAsync(
        string cloudDb, IReadOnlyList<DeviceDatabaseRef> devices, CancellationToken ct)
    {
        var targets = devices.Select(d => d.Target).Distinct().ToList();
        var heads = new Dictionary<string, long>();
        var rows = new Dictionary<string, List<CloudRow>>();
        await using (var dataSource = NpgsqlDataSource.Create(cloudDb))
        {
            foreach (var target in targets)
            {
                (heads[target], rows[target]) = await ReadCloudAsync(dataSource, target, ct);
            }
        }
        var states = new List<DeviceState>();
        foreach (var device in devices)
        {
            states.Add(await ReadDeviceAsync(device, ct));
        }

        return
        [
            NoLoss(states),
            NoDuplication(targets, heads, rows),
            PerDeviceOrder(states, rows),
            MappingsMatchCloud(states, rows),
            CursorOverKnownSeqs(states, heads),
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
    private static Verdict NoDuplication(List<string> targets, Dictionary<string, long> heads, Dictionary<string, List<CloudRow>> rows)
    {
        var problems = new List<string>();
        long total = 0;
        foreach (var target in targets)
        {
            var targetRows = rows[target];
            total += targetRows.Count;
            var duplicates = targetRows.GroupBy(r => (r.DeviceId, r.LocalSeq)).Count(g => g.Count() > 1);
            var seqs = targetRows.Select(r => r.CloudSeq).Order().ToList();
            var gapFree = seqs.Count == heads[target] && seqs.Select((s, i) => s == i + 1).All(ok => ok);
            if (duplicates > 0 || !gapFree)
            {
                problems.Add($"{target}: {targetRows.Count} rows, head {heads[target]}, {duplicates} duplicated, seqs {(gapFree ? "1..head" : "NOT 1..head")}");
            }
        }
        return new Verdict("I2 no duplication", problems.Count == 0,
            problems.Count == 0 ? $"{total} cloud rows over {targets.Count} targets, each target's seqs exactly 1..head" : string.Join("; ", problems));
    }

    /// <summary>I3: for each device, cloud seq order equals local seq order.</summary>
    private static Verdict PerDeviceOrder(List<DeviceState> states, Dictionary<string, List<CloudRow>> rows)
    {
        var inversions = 0;
        foreach (var state in states)
        {
            var own = rows[state.Device.Target].Where(r => r.DeviceId == state.Device.DeviceId).OrderBy(r => r.LocalSeq).ToList();
            inversions += own.Zip(own.Skip(1)).Count(pair => pair.First.CloudSeq >= pair.Second.CloudSeq);
        }
        return new Verdict("I3 per-device order", inversions == 0, $"{inversions} order inversions over {states.Count} devices");
    }

    /// <summary>I4: each device's mappings equal the cloud's rows for that device.</summary>
    private static Verdict MappingsMatchCloud(List<DeviceState> states, Dictionary<string, List<CloudRow>> rows)
    {
        long missing = 0, extra = 0, different = 0, compared = 0;
        foreach (var state in states)
        {
            var cloud = rows[state.Device.Target].Where(r => r.DeviceId == state.Device.DeviceId)
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
    /// Rule 5 on the push side: the cursor never exceeds the head and covers only seqs the device knows
    /// (without pull, that is its own mappings).
    /// </summary>
    private static Verdict CursorOverKnownSeqs(List<DeviceState> states, Dictionary<string, long> heads)
    {
        var bad = new List<string>();
        foreach (var state in states)
        {
            var known = state.Mappings.Values.ToHashSet();
            var unknownBelow = Enumerable.Range(1, (int)state.Cursor).Count(seq => !known.Contains(seq));
            if (state.Cursor > heads[state.Device.Target] || unknownBelow > 0)
            {
                bad.Add($"{state.Device.DeviceId}: cursor {state.Cursor}, {unknownBelow} unknown seqs below it");
            }
        }
        return new Verdict("Rule 5 cursor over known seqs", bad.Count == 0,
            bad.Count == 0
                ? $"cursors {string.Join(", ", states.Select(s => s.Cursor))} cover only known seqs"
                : string.Join("; ", bad));
    }

    private static async Task<(long Head, List<CloudRow> Rows)> ReadCloudAsync(NpgsqlDataSource dataSource, string target, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);
        await using var head = new NpgsqlCommand("SELECT head FROM cloud_targets WHERE target_key = @t", connection, transaction);
        head.Parameters.AddWithValue("t", target);
        var headValue = await head.ExecuteScalarAsync(ct) as long? ?? 0;

        await using var select = new NpgsqlCommand(
            "SELECT device_id, local_seq, cloud_seq FROM cloud_mutations WHERE target_key = @t", connection, transaction);
        select.Parameters.AddWithValue("t", target);
        var rows = new List<CloudRow>();
        await using var reader = await select.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            rows.Add(new CloudRow(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2)));
        }
        return (headValue, rows);
    }

    private static async Task<DeviceState> ReadDeviceAsync(DeviceDatabaseRef device, CancellationToken ct)
    {
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
        await connection.OpenAsync(ct);

        var journal = new List<JournalRow>();
        await using (var select = connection.CreateCommand())
        {
            select.CommandText = """
                SELECT seq, acked_at IS NOT NULL, rejected_at IS NOT NULL, reject_reason
                FROM sync_mutations WHERE target_key = $t AND source = 'local'
                """;
            select.Parameters.AddWithValue("$t", device.Target);
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                journal.Add(new JournalRow(reader.GetInt64(0), reader.GetBoolean(1), reader.GetBoolean(2),
                    reader.IsDBNull(3) ? null : reader.GetString(3)));
            }
        }

        var mappings = new Dictionary<long, long>();
        await using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT local_seq, cloud_seq FROM sync_seq_mapping WHERE target_key = $t";
            select.Parameters.AddWithValue("$t", device.Target);
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                mappings[reader.GetInt64(0)] = reader.GetInt64(1);
            }
        }

        await using var cursor = connection.CreateCommand();
        cursor.CommandText = "SELECT unified_cursor FROM sync_state WHERE target_key = $t";
        cursor.Parameters.AddWithValue("$t", device.Target);
        var cursorValue = await cursor.ExecuteScalarAsync(ct) as long? ?? 0;
        return new DeviceState(device, journal, mappings, cursorValue);
    }
}
