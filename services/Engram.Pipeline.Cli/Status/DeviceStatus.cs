using Engram.Pipeline.CloudIngest.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Cli.Status;

/// <summary>Where one device stands on one target.</summary>
public sealed record DeviceStatus(
    string DeviceId, string Target, long Pending, long InFlight, long Acked, long Rejected,
    IReadOnlyDictionary<string, long> RejectedByReason, long Pulled, long UnifiedCursor, long Head, bool HeadFromCloud,
    string? LastError)
{
    /// <summary>Cloud seqs this device has not brought in yet.</summary>
    public long Lag => Math.Max(0, Head - UnifiedCursor);

    /// <summary>
    /// Reads a device database (read-only). With a cloud store, the head is the cloud's; without, it is
    /// the last head the device heard of.
    /// </summary>
    public static async Task<IReadOnlyList<DeviceStatus>> ReadAsync(string databasePath, ICloudStore? cloud, CancellationToken ct)
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
            await using var counts = connection.CreateCommand();
            counts.CommandText = """
                SELECT
                    COUNT(*) FILTER (WHERE source = 'local' AND acked_at IS NULL AND rejected_at IS NULL AND seq > sent.through),
                    COUNT(*) FILTER (WHERE source = 'local' AND acked_at IS NULL AND rejected_at IS NULL AND seq <= sent.through),
                    COUNT(*) FILTER (WHERE source = 'local' AND acked_at IS NOT NULL),
                    COUNT(*) FILTER (WHERE source = 'local' AND rejected_at IS NOT NULL),
                    COUNT(*) FILTER (WHERE source = 'remote')
                FROM sync_mutations,
                     (SELECT COALESCE((SELECT sent_through FROM sync_state WHERE target_key = $t), 0) AS through) AS sent
                WHERE target_key = $t
                """;
            counts.Parameters.AddWithValue("$t", target);
            long pending, inFlight, acked, rejected, pulled;
            await using (var reader = await counts.ExecuteReaderAsync(ct))
            {
                await reader.ReadAsync(ct);
                (pending, inFlight, acked, rejected, pulled) =
                    (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4));
            }

            var reasons = new Dictionary<string, long>();
            await using (var byReason = connection.CreateCommand())
            {
                byReason.CommandText = """
                    SELECT reject_reason, COUNT(*) FROM sync_mutations
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

            long cursor = 0, seenHead = 0;
            string? lastError = null;
            await using (var state = connection.CreateCommand())
            {
                state.CommandText = "SELECT unified_cursor, cloud_head, last_error FROM sync_state WHERE target_key = $t";
                state.Parameters.AddWithValue("$t", target);
                await using var reader = await state.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    (cursor, seenHead, lastError) = (reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : reader.GetString(2));
                }
            }
            var head = cloud is null ? seenHead : await cloud.HeadAsync(target, ct);
            statuses.Add(new DeviceStatus(deviceId, target, pending, inFlight, acked, rejected, reasons, pulled, cursor, head,
                cloud is not null, lastError));
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
