using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Tests;

/// <summary>Reading a database's schema as upstream's and the pipeline's parts (the database itself: <see cref="Testing.Engram.UpstreamEngram"/>).</summary>
internal static class Upstream
{
    /// <summary>What the device adds to Engram's sync_state table.</summary>
    public const string UnifiedCursorColumn = ", unified_cursor INTEGER NOT NULL DEFAULT 0";

    /// <summary>sqlite_master as (type, name, tbl_name, sql), without FTS5's shadow tables, sorted.</summary>
    public static List<string> Objects(string path)
    {
        using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        return TestDevice.Rows(connection, """
            SELECT type, name, tbl_name, sql FROM sqlite_master
            WHERE name NOT GLOB 'observations_fts_*' AND name NOT GLOB 'prompts_fts_*'
            ORDER BY type, name
            """).ToList();
    }

    /// <summary>Whether a schema object is one of the pipeline's own: sync_seq_mapping (PR #339) and its index, or a pipeline_ table or index.</summary>
    public static bool IsPipelines(string row) =>
        row.Split('|')[2] is "sync_seq_mapping" || row.Split('|')[2].StartsWith("pipeline_", StringComparison.Ordinal);
}
