using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// Where one device stands on one target, for the operator: the <see cref="SyncCounts"/> that health and
/// metrics report, the rejections by reason, and the last whole-batch refusal.
/// </summary>
/// <param name="DeviceId">The device database's id.</param>
/// <param name="Target">The target (shared log).</param>
/// <param name="Counts">What health and metrics report.</param>
/// <param name="HeadFromCloud">Whether <see cref="SyncCounts.Head"/> is the cloud's own, or the last head the device heard of.</param>
/// <param name="RejectedByReason">This device's rejected rows, by the cloud's reason code.</param>
/// <param name="LastError">The last whole-batch refusal, if any.</param>
public sealed record DeviceStatus(
    string DeviceId, string Target, SyncCounts Counts, bool HeadFromCloud, IReadOnlyDictionary<string, long> RejectedByReason,
    string? LastError)
{
    /// <summary>
    /// Reads a device database without writing to it. With <paramref name="cloudHead"/>, each target's
    /// head is the cloud's; without, it is the last head the device heard of.
    /// </summary>
    public static async Task<IReadOnlyList<DeviceStatus>> ReadAsync(
        string databasePath, Func<string, CancellationToken, Task<long>>? cloudHead, CancellationToken ct)
    {
        if (!File.Exists(databasePath))
        {
            throw new FileNotFoundException($"No device database at {databasePath}.", databasePath);
        }
        await using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(ct);
        var deviceId = (string)(await ScalarAsync(connection, "SELECT device_id FROM sync_device", null, ct))!;
        var statuses = new List<DeviceStatus>();
        foreach (var target in await TargetsAsync(connection, ct))
        {
            var counts = SyncCounts.Read(connection, target);
            if (cloudHead is not null)
            {
                counts = counts with { Head = await cloudHead(target, ct) };
            }
            var reasons = new Dictionary<string, long>();
            await using (var byReason = connection.CreateCommand())
            {
                byReason.CommandText = """
                    SELECT reject_reason, COUNT(*) FROM sync_mutations INDEXED BY sync_mutations_rejected
                    WHERE target_key = $t AND source = 'local' AND rejected_at IS NOT NULL
                    GROUP BY reject_reason ORDER BY reject_reason
                    """;
                byReason.Parameters.AddWithValue("$t", target);
                await using var reader = await byReason.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    reasons[reader.GetString(0)] = reader.GetInt64(1);
                }
            }
            var lastError = await ScalarAsync(connection, "SELECT last_error FROM sync_state WHERE target_key = $t", target, ct) as string;
            statuses.Add(new DeviceStatus(deviceId, target, counts, cloudHead is not null, reasons, lastError));
        }
        return statuses;
    }

    private static async Task<List<string>> TargetsAsync(SqliteConnection connection, CancellationToken ct)
    {
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT target_key FROM sync_state UNION SELECT DISTINCT target_key FROM sync_mutations ORDER BY 1";
        var targets = new List<string>();
        await using var reader = await select.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            targets.Add(reader.GetString(0));
        }
        return targets;
    }

    private static async Task<object?> ScalarAsync(SqliteConnection connection, string sql, string? target, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        if (target is not null)
        {
            command.Parameters.AddWithValue("$t", target);
        }
        return await command.ExecuteScalarAsync(ct);
    }
}
