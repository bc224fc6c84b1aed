using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Storage;

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

    public async Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            await using var pragmas = connection.CreateCommand();
            pragmas.CommandText = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;";
            await pragmas.ExecuteNonQueryAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>Creates the tables if needed and returns the database's device id, creating it on first use.</summary>
    public async Task<string> InitialiseAsync(string? configuredDeviceId, TimeProvider clock, CancellationToken cancellationToken)
    {
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = connection.BeginTransaction();
        await using (var ddl = connection.CreateCommand())
        {
            ddl.Transaction = transaction;
            ddl.CommandText = ReadSchema();
            await ddl.ExecuteNonQueryAsync(cancellationToken);
        }

        await using var read = connection.CreateCommand();
        read.Transaction = transaction;
        read.CommandText = "SELECT device_id FROM sync_device WHERE singleton = 1";
        if (await read.ExecuteScalarAsync(cancellationToken) is string stored)
        {
            if (!string.IsNullOrEmpty(configuredDeviceId) && configuredDeviceId != stored)
            {
                throw new InvalidOperationException(
                    $"The device database {Path} belongs to device '{stored}', but Device:Id says '{configuredDeviceId}'. " +
                    "A device id names one database; use that database's id or a new database.");
            }
            await transaction.CommitAsync(cancellationToken);
            return stored;
        }

        var deviceId = string.IsNullOrEmpty(configuredDeviceId) ? Guid.NewGuid().ToString("N") : configuredDeviceId;
        await using var write = connection.CreateCommand();
        write.Transaction = transaction;
        write.CommandText = "INSERT INTO sync_device (singleton, device_id, created_at) VALUES (1, $id, $now)";
        write.Parameters.AddWithValue("$id", deviceId);
        write.Parameters.AddWithValue("$now", Timestamp(clock.GetUtcNow()));
        await write.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
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
