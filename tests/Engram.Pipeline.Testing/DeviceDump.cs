using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Testing;

/// <summary>Reads what the cursor service writes in a device database, timestamps left out, in a fixed order.</summary>
public static class DeviceDump
{
    public static async Task<string> ReadAsync(string databasePath)
    {
        await using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        var lines = new List<string>();
        foreach (var sql in new[]
        {
            "SELECT seq, acked_at IS NOT NULL, rejected_at IS NOT NULL, reject_reason FROM sync_mutations ORDER BY seq",
            "SELECT local_seq, cloud_seq FROM sync_seq_mapping ORDER BY local_seq",
            "SELECT target_key, unified_cursor, cloud_head FROM sync_state ORDER BY target_key",
            "SELECT entity, entity_key, payload, deleted, cloud_seq, local_seq FROM entities ORDER BY entity, entity_key",
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
