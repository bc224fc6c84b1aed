using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Storage;

/// <summary>
/// The Engram database the device works on, which the Engram application writes at the same time from its own
/// process (one connection, <c>busy_timeout=5000</c>, <c>BEGIN IMMEDIATE</c>). So every write transaction here is
/// short and immediate, and a busy database is waited out (<c>busy_timeout</c>), never an error of its own.
/// The wait is the connection string's <c>Default Timeout</c> when it names one, else 60 s.
/// </summary>
public sealed class EngramDatabase
{
    private const string EngramSchemaResource = "engram-schema.sql";
    private const string PipelineSchemaResource = "pipeline-schema.sql";
    private const int DefaultBusyTimeoutSeconds = 60;

    private readonly string _connectionString;
    private readonly int _busyTimeoutMilliseconds;

    public EngramDatabase(string connectionString)
    {
        var builder = new SqliteConnectionStringBuilder(connectionString)
        {
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
        };
        if (!builder.ShouldSerialize("Default Timeout"))
        {
            builder.DefaultTimeout = DefaultBusyTimeoutSeconds;
        }
        if (string.IsNullOrWhiteSpace(builder.DataSource))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:DeviceDb names no Engram database (environment variable ConnectionStrings__DeviceDb, e.g. Data Source=/home/me/.engram/engram.db).");
        }
        _connectionString = builder.ToString();
        _busyTimeoutMilliseconds = checked(builder.DefaultTimeout * 1000);
        Path = builder.DataSource;
    }

    public string Path { get; }

    /// <summary>
    /// Opens a connection. Microsoft.Data.Sqlite does its I/O synchronously whatever the method, so the
    /// async signature only keeps callers uniform.
    /// </summary>
    public Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(Open());
    }

    /// <summary>
    /// Opens a connection with Engram's own per-connection settings: foreign keys enforced, normal synchronous
    /// writes; and a busy timeout (the connection string's <c>Default Timeout</c>) long enough to wait out the Engram
    /// process's write transactions.
    /// </summary>
    public SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            connection.Open();
            using var pragmas = connection.CreateCommand();
            // A pragma takes no parameters; the number is the builder's own int.
            pragmas.CommandText = $"PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {_busyTimeoutMilliseconds};";
            pragmas.ExecuteNonQuery();
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Attaches to the database and returns its device id. An empty file gets upstream's schema, as upstream's own
    /// migrate() leaves a new database; a database of another kind is refused. Then the pipeline's additions are
    /// made if missing (<c>pipeline-schema.sql</c> and <c>sync_state.unified_cursor</c>), and the device id read,
    /// or made on the first attach. Synchronous because it runs while the service provider is built.
    /// </summary>
    public string Attach(string? configuredDeviceId, TimeProvider clock)
    {
        try
        {
            return AttachCore(configuredDeviceId, clock);
        }
        catch (SqliteException e)
        {
            throw new InvalidOperationException($"Cannot open the Engram database {Path}: {e.Message}", e);
        }
    }

    private string AttachCore(string? configuredDeviceId, TimeProvider clock)
    {
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }
        using var connection = Open();
        using (var wal = connection.CreateCommand())
        {
            // Kept in the file, as Engram itself sets it; not allowed inside a transaction.
            wal.CommandText = "PRAGMA journal_mode = WAL";
            wal.ExecuteNonQuery();
        }
        using var transaction = connection.BeginTransaction();
        using (var tables = transaction.Command("SELECT name FROM sqlite_master WHERE type = 'table'"))
        using (var reader = tables.ExecuteReader())
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            while (reader.Read())
            {
                names.Add(reader.GetString(0));
            }
            reader.Close();
            if (names.Count == 0)
            {
                CreateEngramSchema(transaction);
            }
            else if (MissingEngramColumns(transaction) is { Count: > 0 } missing)
            {
                throw new InvalidOperationException(
                    $"{Path} is not an Engram database as upstream Engram makes it (missing: {string.Join(", ", missing)}). " +
                    "Point ConnectionStrings:DeviceDb at Engram's own database file, or at a new file.");
            }
        }
        using (var ours = transaction.Command(ReadResource(PipelineSchemaResource)))
        {
            ours.ExecuteNonQuery();
        }
        using (var cursor = transaction.Command("SELECT COUNT(*) FROM pragma_table_info('sync_state') WHERE name = 'unified_cursor'"))
        {
            if ((long)cursor.ExecuteScalar()! == 0)
            {
                cursor.CommandText = "ALTER TABLE sync_state ADD COLUMN unified_cursor INTEGER NOT NULL DEFAULT 0";
                cursor.ExecuteNonQuery();
            }
        }
        var deviceId = DeviceId(transaction, configuredDeviceId, clock);
        transaction.Commit();
        return deviceId;
    }

    /// <summary>Upstream's tables and the columns the pipeline reads or writes in them.</summary>
    private static readonly Dictionary<string, string[]> EngramColumns = new()
    {
        ["sync_mutations"] = ["seq", "target_key", "entity", "entity_key", "op", "payload", "source", "occurred_at", "acked_at",
            "disposition", "disposition_reason", "disposition_evidence", "disposition_at", "project"],
        ["sync_state"] = ["target_key", "lifecycle", "last_enqueued_seq", "last_acked_seq", "consecutive_failures", "lease_owner",
            "lease_until", "last_error", "last_success_at", "updated_at", "reason_code", "reason_message"],
        ["sync_enrolled_projects"] = ["project"],
        ["sessions"] = ["id", "project", "ownership_mode", "directory", "started_at", "ended_at", "summary"],
        ["observations"] = ["id", "sync_id", "session_id", "type", "title", "content", "tool_name", "project", "scope", "topic_key",
            "normalized_hash", "revision_count", "duplicate_count", "last_seen_at", "created_at", "updated_at", "deleted_at"],
        ["user_prompts"] = ["id", "sync_id", "source_inbox_id", "session_id", "content", "project", "created_at"],
        ["prompt_tombstones"] = ["sync_id", "source_inbox_id", "session_id", "project", "deleted_at"],
        ["memory_relations"] = ["sync_id", "source_id", "target_id", "relation", "reason", "evidence", "confidence", "judgment_status",
            "marked_by_actor", "marked_by_kind", "marked_by_model", "session_id", "created_at", "updated_at"],
        ["sync_delete_tombstones"] = ["entity", "entity_key", "session_id", "project", "deleted_at", "hard_delete", "active",
            "last_mutation_seq", "last_remote_mutation_seq"],
        ["sync_apply_deferred"] = ["sync_id", "entity", "payload", "target_key", "remote_seq", "entity_key", "op", "reason_code",
            "project", "scope_class", "apply_status", "retry_count", "payload_sync_id", "last_error", "last_attempted_at", "first_seen_at"],
    };

    private static List<string> MissingEngramColumns(SqliteTransaction transaction)
    {
        var missing = new List<string>();
        using var columns = transaction.Command("SELECT name FROM pragma_table_info($table)", ("$table", ""));
        foreach (var (table, expected) in EngramColumns)
        {
            columns.Bind(("$table", table));
            var present = new HashSet<string>(StringComparer.Ordinal);
            using (var reader = columns.ExecuteReader())
            {
                while (reader.Read())
                {
                    present.Add(reader.GetString(0));
                }
            }
            missing.AddRange(present.Count == 0 ? [table] : expected.Where(c => !present.Contains(c)).Select(c => $"{table}.{c}"));
        }
        return missing;
    }

    /// <summary>Upstream's schema, its user_version and the sync_state rows its migrate() seeds.</summary>
    private static void CreateEngramSchema(SqliteTransaction transaction)
    {
        using var create = transaction.Command(ReadResource(EngramSchemaResource) + """

            PRAGMA user_version = 1;
            INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ('cloud', 'idle', datetime('now'));
            INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ('cloud:inbox', 'inbox', datetime('now'));
            """);
        create.ExecuteNonQuery();
    }

    private string DeviceId(SqliteTransaction transaction, string? configuredDeviceId, TimeProvider clock)
    {
        using var read = transaction.Command("SELECT device_id FROM pipeline_device WHERE singleton = 1");
        if (read.ExecuteScalar() is string stored)
        {
            if (!string.IsNullOrEmpty(configuredDeviceId) && configuredDeviceId != stored)
            {
                throw new InvalidOperationException(
                    $"The Engram database {Path} belongs to device '{stored}', but Device:Id says '{configuredDeviceId}'. " +
                    "A device id names one database; use that database's id or another database.");
            }
            return stored;
        }
        var deviceId = string.IsNullOrEmpty(configuredDeviceId) ? Guid.NewGuid().ToString("N") : configuredDeviceId;
        using var write = transaction.Command("INSERT INTO pipeline_device (singleton, device_id, created_at) VALUES (1, $id, $now)",
            ("$id", deviceId), ("$now", EngramTime.Iso(clock.GetUtcNow())));
        write.ExecuteNonQuery();
        return deviceId;
    }

    private static string ReadResource(string name)
    {
        using var stream = typeof(EngramDatabase).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"{name} is not embedded in the device assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
