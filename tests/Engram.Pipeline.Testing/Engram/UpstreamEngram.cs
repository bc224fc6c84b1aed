using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Testing.Engram;

/// <summary>
/// Engram databases as upstream makes them, independently of the device's own copy of the schema: from
/// shared/engram/upstream-schema.sql (copied here), which records what upstream's <c>migrate()</c> leaves in
/// sqlite_master on a new database, with the user_version and <c>sync_state</c> rows it sets.
/// </summary>
public static class UpstreamEngram
{
    /// <summary>Upstream's schema, as its <c>CREATE</c> statements.</summary>
    public static string Schema { get; } = Read();

    /// <summary>Creates a new Engram database at <paramref name="path"/> as upstream's first start does.</summary>
    public static void Create(string path)
    {
        using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        connection.Open();
        using var create = connection.CreateCommand();
        create.CommandText = $"""
            PRAGMA journal_mode = WAL;
            BEGIN;
            {Schema};
            INSERT INTO sync_state (target_key, lifecycle, updated_at) VALUES ('cloud', 'idle', datetime('now'));
            INSERT INTO sync_state (target_key, lifecycle, updated_at) VALUES ('cloud:inbox', 'inbox', datetime('now'));
            PRAGMA user_version = 1;
            COMMIT;
            """;
        create.ExecuteNonQuery();
    }

    private static string Read()
    {
        using var stream = typeof(UpstreamEngram).Assembly.GetManifestResourceStream("upstream-schema.sql")
                           ?? throw new InvalidOperationException("upstream-schema.sql is not embedded in Engram.Pipeline.Testing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
