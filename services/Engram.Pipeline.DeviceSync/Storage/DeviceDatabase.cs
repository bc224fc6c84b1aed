using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Storage;

/// <summary>
/// The device's SQLite file. WAL lets the publisher read while the journal and the cursor service
/// write, and lets the Engram application write the same file from its own process.
/// </summary>
public sealed class DeviceDatabase
{
    private readonly string _connectionString;

    public DeviceDatabase(string connectionString)
    {
        var builder = new SqliteConnectionStringBuilder(connectionString)
        {
            Mode = SqliteOpenMode.ReadWriteCreate,
            DefaultTimeout = 30,
            Pooling = true,
        };
        if (string.IsNullOrWhiteSpace(builder.DataSource))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:DeviceDb names no SQLite file (environment variable ConnectionStrings__DeviceDb, e.g. Data Source=/data/engram.db).");
        }
        _connectionString = builder.ToString();
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

    /// <summary>Opens a connection with the per-connection pragmas set (WAL is set once, in <see cref="Initialise"/>: it is kept in the file).</summary>
    public SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            connection.Open();
            using var pragmas = connection.CreateCommand();
            pragmas.CommandText = "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;";
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
    /// Creates the tables if needed and returns the database's device id, creating it on first use.
    /// Synchronous because it runs while the service provider is built (the bus needs the id).
    /// </summary>
    public string Initialise(string? configuredDeviceId, TimeProvider clock)
    {
        try
        {
            return InitialiseCore(configuredDeviceId, clock);
        }
        catch (SqliteException e)
        {
            throw new InvalidOperationException($"Cannot open the device database {Path}: {e.Message}", e);
        }
    }

    private string InitialiseCore(string? configuredDeviceId, TimeProvider clock)
    {
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }
        using var connection = Open();
        using (var wal = connection.CreateCommand())
        {
            // Persistent in the database file, and not allowed inside a transaction.
            wal.CommandText = "PRAGMA journal_mode = WAL";
            wal.ExecuteNonQuery();
        }
        using var transaction = connection.BeginTransaction();
        using (var ddl = transaction.Command(ReadSchema()))
        {
            ddl.ExecuteNonQuery();
            // A database created before sync_state had sent_through gets the column (CREATE TABLE IF NOT EXISTS leaves it as it was).
            ddl.CommandText = "SELECT COUNT(*) FROM pragma_table_info('sync_state') WHERE name = 'sent_through'";
            if ((long)ddl.ExecuteScalar()! == 0)
            {
                ddl.CommandText = "ALTER TABLE sync_state ADD COLUMN sent_through INTEGER NOT NULL DEFAULT 0";
                ddl.ExecuteNonQuery();
            }
        }

        using var read = transaction.Command("SELECT device_id FROM sync_device WHERE singleton = 1");
        if (read.ExecuteScalar() is string stored)
        {
            if (!string.IsNullOrEmpty(configuredDeviceId) && configuredDeviceId != stored)
            {
                throw new InvalidOperationException(
                    $"The device database {Path} belongs to device '{stored}', but Device:Id says '{configuredDeviceId}'. " +
                    "A device id names one database; use that database's id or a new database.");
            }
            transaction.Commit();
            return stored;
        }

        var deviceId = string.IsNullOrEmpty(configuredDeviceId) ? Guid.NewGuid().ToString("N") : configuredDeviceId;
        using var write = transaction.Command("INSERT INTO sync_device (singleton, device_id, created_at) VALUES (1, $id, $now)",
            ("$id", deviceId), ("$now", Timestamp(clock.GetUtcNow())));
        write.ExecuteNonQuery();
        transaction.Commit();
        return deviceId;
    }

    /// <summary>Timestamps are stored as round-trip ISO 8601 text, as upstream Engram does.</summary>
    public static string Timestamp(DateTimeOffset value) =>
        value.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture);

    private static string ReadSchema()
    {
        using var stream = typeof(DeviceDatabase).Assembly.GetManifestResourceStream("device-schema.sql")
            ?? throw new InvalidOperationException("device-schema.sql is not embedded in the device assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
