using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// Where one device stands on one project, for the operator: the <see cref="SyncCounts"/> that health and metrics
/// report, the rejections by reason, the last whole-batch refusal, and who holds Engram's sync lease.
/// </summary>
/// <param name="DeviceId">The Engram database's device id; null when no device has attached to it yet.</param>
/// <param name="Project">The project (the target).</param>
/// <param name="Counts">What health and metrics report.</param>
/// <param name="HeadFromCloud">Whether <see cref="SyncCounts.Head"/> is the cloud's own, or the last head the device heard of.</param>
/// <param name="RejectedByReason">This device's rejected rows, by the cloud's reason code.</param>
/// <param name="LastRefusal">The last whole-batch refusal, if any.</param>
/// <param name="LeaseOwner">Who holds Engram's sync lease (<c>sync_state('cloud')</c>), and until when; null when nobody does.</param>
public sealed record DeviceStatus(
    string? DeviceId, string Project, SyncCounts Counts, bool HeadFromCloud, IReadOnlyDictionary<string, long> RejectedByReason,
    string? LastRefusal, string? LeaseOwner)
{
    /// <summary>
    /// Reads an Engram database without writing to it: every project enrolled in Engram's sync, and every project
    /// the device has synced. With <paramref name="cloudHead"/>, each head is the cloud's; without, it is the last
    /// head the device heard of.
    /// </summary>
    public static async Task<IReadOnlyList<DeviceStatus>> ReadAsync(
        string databasePath, Func<string, CancellationToken, Task<long>>? cloudHead, CancellationToken ct)
    {
        if (!File.Exists(databasePath))
        {
            throw new FileNotFoundException($"No Engram database at {databasePath}.", databasePath);
        }
        await using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(ct);
        var attached = await ScalarAsync(connection, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'pipeline_device'", ct) is 1L;
        var deviceId = attached ? await ScalarAsync(connection, "SELECT device_id FROM pipeline_device", ct) as string : null;
        var lease = await ScalarAsync(connection,
            "SELECT lease_owner || ' until ' || lease_until FROM sync_state WHERE target_key = 'cloud' AND lease_owner <> ''", ct) as string;
        var statuses = new List<DeviceStatus>();
        foreach (var project in await ProjectsAsync(connection, attached, ct))
        {
            var target = new SyncTarget(project);
            var counts = attached ? SyncCounts.Read(connection, target) : new SyncCounts(0, 0, 0, 0, 0, 0, 0, 0, 0);
            if (cloudHead is not null)
            {
                counts = counts with { Head = await cloudHead(project, ct) };
            }
            var reasons = new Dictionary<string, long>();
            string? refusal = null;
            if (attached)
            {
                await using var byReason = connection.CreateCommand();
                byReason.CommandText = "SELECT reason, COUNT(*) FROM pipeline_rejections WHERE target_key = $t GROUP BY reason ORDER BY reason";
                byReason.Parameters.AddWithValue("$t", target.Key);
                await using (var reader = await byReason.ExecuteReaderAsync(ct))
                {
                    while (await reader.ReadAsync(ct))
                    {
                        reasons[reader.GetString(0)] = reader.GetInt64(1);
                    }
                }
                byReason.CommandText = "SELECT last_refusal FROM pipeline_targets WHERE target_key = $t";
                refusal = await byReason.ExecuteScalarAsync(ct) as string;
            }
            statuses.Add(new DeviceStatus(deviceId, project, counts, cloudHead is not null, reasons, refusal, lease));
        }
        return statuses;
    }

    private static async Task<List<string>> ProjectsAsync(SqliteConnection connection, bool attached, CancellationToken ct)
    {
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT project FROM sync_enrolled_projects" + (attached
            ? " UNION SELECT substr(target_key, 7) FROM pipeline_targets WHERE target_key LIKE 'cloud:%'"
            : "") + " ORDER BY 1";
        var projects = new List<string>();
        await using var reader = await select.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            projects.Add(reader.GetString(0));
        }
        return projects;
    }

    private static async Task<object?> ScalarAsync(SqliteConnection connection, string sql, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return await command.ExecuteScalarAsync(ct);
    }
}
