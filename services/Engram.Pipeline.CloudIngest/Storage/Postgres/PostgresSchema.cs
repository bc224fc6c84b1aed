using Npgsql;

namespace Engram.Pipeline.CloudIngest.Storage.Postgres;

/// <summary>
/// Creates the cloud tables before the bus starts. Many ingest processes may start at once, so
/// the DDL runs under a transaction-scoped advisory lock.
/// </summary>
public sealed class PostgresSchema(NpgsqlDataSource dataSource, ILogger<PostgresSchema> log) : IHostedService
{
    private const long SchemaLockKey = 0x456e6772616d; // "Engram"

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await EnsureCreatedAsync(cancellationToken);
        }
        catch (NpgsqlException e)
        {
            throw new InvalidOperationException(
                $"Cannot prepare the cloud database ({Describe(dataSource)}): {e.Message}", e);
        }
        log.LogInformation("Cloud schema ready on {Database}", Describe(dataSource));
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task EnsureCreatedAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", connection, transaction))
        {
            lockCommand.Parameters.AddWithValue("key", SchemaLockKey);
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var ddl = new NpgsqlCommand(ReadSchema(), connection, transaction))
        {
            await ddl.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    private static string ReadSchema()
    {
        using var stream = typeof(PostgresSchema).Assembly.GetManifestResourceStream("schema.sql")
            ?? throw new InvalidOperationException("schema.sql is not embedded in the ingest assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static string Describe(NpgsqlDataSource dataSource)
    {
        var builder = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString);
        return $"{builder.Host}:{builder.Port}/{builder.Database}";
    }
}
