using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Testing;

/// <summary>Reads what the cursor service writes in an Engram database, timestamps left out, in a fixed order.</summary>
public static class DeviceDump
{
    public static async Task<string> ReadAsync(string databasePath)
    {
        await using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        var lines = new List<string>();
        foreach (var sql in new[]
        {
            "SELECT seq, acked_at IS NOT NULL, disposition, disposition_reason FROM sync_mutations ORDER BY seq",
            "SELECT target_key, local_seq, cloud_seq FROM sync_seq_mapping ORDER BY target_key, local_seq",
            "SELECT target_key, local_seq, reason FROM pipeline_rejections ORDER BY target_key, local_seq",
            "SELECT target_key, lifecycle, last_acked_seq, unified_cursor FROM sync_state ORDER BY target_key",
            "SELECT target_key, cloud_head FROM pipeline_targets ORDER BY target_key",
            "SELECT target_key, entity, entity_key, last_mutation_seq FROM sync_delete_tombstone_remote_floors ORDER BY 1, 2, 3",
        })
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                lines.Add(string.Join('|', Enumerable.Range(0, reader.FieldCount)
                    .Select(i => reader.IsDBNull(i) ? "null" : Convert.ToString(reader.GetValue(i), System.Globalization.CultureInfo.InvariantCulture))));
            }
        }
        return string.Join('\n', lines);
    }
}
