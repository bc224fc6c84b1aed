using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing.Engram;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_a_device_attaches_to_an_empty_file : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-attach-test-");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public void It_gets_exactly_upstreams_schema_and_the_pipelines_additions()
    {
        var attached = Path.Combine(_directory.FullName, "attached.db");
        var upstream = Path.Combine(_directory.FullName, "upstream.db");
        new EngramDatabase($"Data Source={attached}").Attach("device-a", TimeProvider.System);
        UpstreamEngram.Create(upstream);

        var objects = Upstream.Objects(attached);
        var syncState = Assert.Single(objects, row => row.StartsWith("table|sync_state|", StringComparison.Ordinal));
        Assert.EndsWith(Upstream.UnifiedCursorColumn + ")", syncState, StringComparison.Ordinal);

        Assert.Equal(Upstream.Objects(upstream), objects.Where(row => !Upstream.IsPipelines(row)).Select(row => row.Replace(Upstream.UnifiedCursorColumn, "")));
        Assert.Equal(
        [
            "index|pipeline_applied_entity|pipeline_applied",
            "index|sqlite_autoindex_pipeline_applied_1|pipeline_applied",
            "index|sqlite_autoindex_pipeline_rejections_1|pipeline_rejections",
            "index|sqlite_autoindex_pipeline_targets_1|pipeline_targets",
            "index|sqlite_autoindex_sync_seq_mapping_1|sync_seq_mapping",
            "index|sync_seq_mapping_cloud|sync_seq_mapping",
            "table|pipeline_applied|pipeline_applied",
            "table|pipeline_device|pipeline_device",
            "table|pipeline_rejections|pipeline_rejections",
            "table|pipeline_targets|pipeline_targets",
            "table|sync_seq_mapping|sync_seq_mapping",
        ], objects.Where(Upstream.IsPipelines).Select(row => string.Join('|', row.Split('|').Take(3))));
        Assert.Contains(objects, row => row.StartsWith("index|sync_seq_mapping_cloud|", StringComparison.Ordinal) && row.Contains("CREATE UNIQUE INDEX", StringComparison.Ordinal));
    }

    [Fact]
    public void Its_sync_seq_mapping_is_declared_as_pr_339_declares_it_so_that_upstreams_inserts_work()
    {
        var database = new EngramDatabase($"Data Source={Path.Combine(_directory.FullName, "engram.db")}");
        database.Attach("device-a", TimeProvider.System);

        using var connection = database.Open();
        Assert.Equal(
        [
            "local_seq|INTEGER|1|null|2",
            "cloud_seq|INTEGER|1|null|0",
            "target_key|TEXT|1|'local'|1",
            "synced_at|TEXT|1|datetime('now')|0",
        ], TestDevice.Rows(connection, "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('sync_seq_mapping') ORDER BY cid"));

        // PR #339's inserts name neither synced_at nor, by default, target_key.
        using (var insert = connection.CreateCommand())
        {
            insert.CommandText = """
                INSERT INTO sync_seq_mapping (target_key, local_seq, cloud_seq) VALUES ('cloud', 1, 10);
                INSERT INTO sync_seq_mapping (local_seq, cloud_seq) VALUES (2, 11);
                """;
            insert.ExecuteNonQuery();
        }
        var rows = TestDevice.Rows(connection, "SELECT target_key, local_seq, cloud_seq, synced_at FROM sync_seq_mapping ORDER BY local_seq");
        Assert.Collection(rows,
            row => Assert.Matches(@"^cloud\|1\|10\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", row),
            row => Assert.Matches(@"^local\|2\|11\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", row));
    }

    [Fact]
    public void It_has_upstreams_user_version_and_seeded_sync_state_rows()
    {
        var path = Path.Combine(_directory.FullName, "engram.db");
        var database = new EngramDatabase($"Data Source={path}");
        database.Attach("device-a", TimeProvider.System);

        using var connection = database.Open();
        Assert.Equal(["1"], TestDevice.Rows(connection, "PRAGMA user_version"));
        Assert.Equal(["cloud|idle|0|0|0|0|null|null", "cloud:inbox|inbox|0|0|0|0|null|null"], TestDevice.Rows(connection, """
            SELECT target_key, lifecycle, last_enqueued_seq, last_acked_seq, last_pulled_seq, unified_cursor, lease_owner, last_success_at
            FROM sync_state ORDER BY target_key
            """));
        Assert.Equal(["wal"], TestDevice.Rows(connection, "PRAGMA journal_mode"));
    }

    [Fact]
    public void A_second_attach_keeps_the_device_id_and_another_configured_id_is_refused()
    {
        var database = new EngramDatabase($"Data Source={Path.Combine(_directory.FullName, "engram.db")}");

        var made = database.Attach(null, TimeProvider.System);

        Assert.Matches("^[0-9a-f]{32}$", made);
        Assert.Equal(made, database.Attach(null, TimeProvider.System));
        Assert.Equal(made, database.Attach(made, TimeProvider.System));
        var error = Assert.Throws<InvalidOperationException>(() => database.Attach("device-b", TimeProvider.System));
        Assert.Contains($"belongs to device '{made}'", error.Message, StringComparison.Ordinal);
        Assert.Equal(made, database.Attach(null, TimeProvider.System));
    }

    [Fact]
    public void A_configured_id_is_kept_from_the_first_attach()
    {
        var database = new EngramDatabase($"Data Source={Path.Combine(_directory.FullName, "engram.db")}");

        Assert.Equal("device-a", database.Attach("device-a", TimeProvider.System));
        Assert.Equal("device-a", database.Attach(null, TimeProvider.System));
        Assert.Contains("belongs to device 'device-a'",
            Assert.Throws<InvalidOperationException>(() => database.Attach("device-b", TimeProvider.System)).Message, StringComparison.Ordinal);
    }
}

public sealed class When_a_device_attaches_to_an_existing_engram_database : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-attach-test-");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public void None_of_upstreams_rows_or_columns_change()
    {
        var path = Path.Combine(_directory.FullName, "engram.db");
        UpstreamEngram.Create(path);
        WriteAsEngramDoes(path);
        var objectsBefore = Upstream.Objects(path);
        var tables = TablesAndColumns(path);
        var before = Dump(path, tables);
        Assert.True(before.Count > 40, $"the fixture wrote only {before.Count} rows");

        var deviceId = new EngramDatabase($"Data Source={path}").Attach("device-a", TimeProvider.System);

        Assert.Equal("device-a", deviceId);
        Assert.Equal(before, Dump(path, tables));
        Assert.Equal(objectsBefore, Upstream.Objects(path).Where(row => !Upstream.IsPipelines(row)).Select(row => row.Replace(Upstream.UnifiedCursorColumn, "")));
        Assert.Equal(TablesAndColumns(path)["sync_state"], [.. tables["sync_state"], "unified_cursor"]);
    }

    [Fact]
    public void A_lease_engram_holds_and_its_sync_state_stay_as_they_were()
    {
        var path = Path.Combine(_directory.FullName, "engram.db");
        UpstreamEngram.Create(path);
        using (var engram = new EngramWriter(path))
        {
            engram.EnrollProject("team");
            engram.CreateSession("s1", "team", "/home/a/team");
        }
        var tables = TablesAndColumns(path);
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            connection.Open();
            using var lease = connection.CreateCommand();
            lease.CommandText = "UPDATE sync_state SET lease_owner = 'autosync-1788412345123456789', lease_until = '2999-01-01T00:00:00Z' WHERE target_key = 'cloud'";
            lease.ExecuteNonQuery();
        }
        var before = Dump(path, tables);

        new EngramDatabase($"Data Source={path}").Attach(null, TimeProvider.System);

        Assert.Equal(before, Dump(path, tables));
    }

    /// <summary>A database Engram has used: every kind of memory, deletes, tombstones, a removed journal row, a relation.</summary>
    private static void WriteAsEngramDoes(string path)
    {
        using var engram = new EngramWriter(path, new Random(3));
        engram.CreateSession("s0", "solo", "/home/a/solo");
        engram.AddObservation("s0", "discovery", "unsynced", "a project never enrolled journals nothing", "solo");
        engram.EnrollProject("team");
        engram.CreateSession("s1", "team", "/home/a/team");
        var kept = engram.AddObservation("s1", "decision", "Use WAL", "readers never block the writer", "team");
        var other = engram.AddObservation("s1", "discovery", "FTS", "trigram tokenizer finds substrings", "team");
        engram.JudgeRelation(kept.SyncId, other.SyncId, "related", "both about SQLite", 0.9);
        var soft = engram.AddObservation("s1", "bugfix", "soft", "deleted softly", "team");
        engram.DeleteObservation(soft.SyncId, hard: false);
        var hard = engram.AddObservation("s1", "bugfix", "hard", "deleted for good", "team");
        engram.DeleteObservation(hard.SyncId, hard: true);
        var prompt = engram.AddPrompt("s1", "how do I make the build faster?", "team");
        engram.DeletePrompt(prompt.SyncId);
        engram.AddPrompt("s1", "and the tests?", "team");
        engram.EndSession("s1", "made it faster");
    }

    private static Dictionary<string, List<string>> TablesAndColumns(string path)
    {
        using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        return TestDevice.Rows(connection, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .ToDictionary(table => table, table => TestDevice.Rows(connection, $"SELECT name FROM pragma_table_info('{table}') ORDER BY cid").ToList());
    }

    /// <summary>Every row of every table, FTS5's own included, in the columns each had before, sorted.</summary>
    private static List<string> Dump(string path, Dictionary<string, List<string>> tables)
    {
        using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        var rows = new List<string>();
        foreach (var (table, columns) in tables)
        {
            var select = $"SELECT {string.Join(", ", columns.Select(c => $"\"{c}\""))} FROM \"{table}\"";
            rows.AddRange(TestDevice.Rows(connection, select).Order(StringComparer.Ordinal).Select(row => $"{table}: {row}"));
        }
        return rows;
    }
}

public sealed class When_a_device_attaches_to_a_database_of_another_kind : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-attach-test-");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public void A_sqlite_file_without_engrams_tables_is_refused_with_what_is_missing_and_left_alone()
    {
        var path = Path.Combine(_directory.FullName, "notes.db");
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            connection.Open();
            using var create = connection.CreateCommand();
            create.CommandText = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('mine')";
            create.ExecuteNonQuery();
        }

        var error = Assert.Throws<InvalidOperationException>(() => new EngramDatabase($"Data Source={path}").Attach("device-a", TimeProvider.System));

        Assert.Contains("is not an Engram database", error.Message, StringComparison.Ordinal);
        Assert.Contains("sync_mutations", error.Message, StringComparison.Ordinal);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.Equal(["table|notes|notes|CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"], Upstream.Objects(path));
    }

    [Fact]
    public void An_engram_database_missing_a_column_the_pipeline_needs_is_refused_naming_it()
    {
        var path = Path.Combine(_directory.FullName, "old.db");
        UpstreamEngram.Create(path);
        using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            connection.Open();
            using var drop = connection.CreateCommand();
            drop.CommandText = "DROP INDEX idx_sync_mutations_project; ALTER TABLE sync_mutations DROP COLUMN project";
            drop.ExecuteNonQuery();
        }

        var error = Assert.Throws<InvalidOperationException>(() => new EngramDatabase($"Data Source={path}").Attach("device-a", TimeProvider.System));

        Assert.Contains("missing: sync_mutations.project", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Upstream.Objects(path), row => Upstream.IsPipelines(row));
    }

    [Fact]
    public void A_file_that_is_not_sqlite_is_refused_naming_the_file()
    {
        var path = Path.Combine(_directory.FullName, "notes.txt");
        File.WriteAllText(path, new string('x', 4096));

        var error = Assert.Throws<InvalidOperationException>(() => new EngramDatabase($"Data Source={path}").Attach("device-a", TimeProvider.System));

        Assert.Contains($"Cannot open the Engram database {path}", error.Message, StringComparison.Ordinal);
        Assert.Equal(new string('x', 4096), File.ReadAllText(path));
    }
}

public sealed class When_the_connection_string_names_a_default_timeout : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-attach-test-");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    [Theory]
    [InlineData("", 60)]
    [InlineData(";Default Timeout=1", 1)]
    [InlineData(";Command Timeout=5", 5)]
    public void The_busy_timeout_follows_it_and_is_60_s_without_one(string timeout, int seconds)
    {
        var database = new EngramDatabase($"Data Source={Path.Combine(_directory.FullName, "engram.db")}{timeout}");

        using var connection = database.Open();
        using var busyTimeout = connection.CreateCommand();
        busyTimeout.CommandText = "PRAGMA busy_timeout";

        Assert.Equal(seconds * 1000L, (long)busyTimeout.ExecuteScalar()!);
        Assert.Equal(seconds, connection.DefaultTimeout);
    }

    [Fact]
    public void A_connection_string_without_a_data_source_is_refused_naming_the_setting()
    {
        var error = Assert.Throws<InvalidOperationException>(() => new EngramDatabase("Default Timeout=1"));

        Assert.StartsWith("ConnectionStrings:DeviceDb names no Engram database", error.Message, StringComparison.Ordinal);
    }
}
