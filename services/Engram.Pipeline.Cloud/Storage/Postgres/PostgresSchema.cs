using System.Text.RegularExpressions;
using Npgsql;

namespace Engram.Pipeline.Cloud.Storage.Postgres;

/// <summary>
/// Creates the cloud tables before the bus starts. Many ingest processes may start at once, so
/// the DDL runs under a transaction-scoped advisory lock. A role that may not create tables (the
/// restricted <c>engram_ingest</c>) only checks that they exist.
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
        await using (var privilege = new NpgsqlCommand("SELECT has_schema_privilege(current_schema(), 'CREATE')", connection))
        {
            if (await privilege.ExecuteScalarAsync(cancellationToken) is not true)
            {
                // A role limited to the cloud tables (infra/postgres/roles.sql) runs no DDL: the owner made them.
                await EnsureTablesExistAsync(connection, cancellationToken);
                return;
            }
        }
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

    private static async Task EnsureTablesExistAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var tables = Regex.Matches(ReadSchema(), @"CREATE TABLE IF NOT EXISTS (\w+)").Select(m => m.Groups[1].Value).ToArray();
        await using var check = new NpgsqlCommand(
            "SELECT array_agg(t) FROM unnest(@tables) AS t WHERE to_regclass(t) IS NULL", connection);
        check.Parameters.AddWithValue("tables", tables);
        if (await check.ExecuteScalarAsync(cancellationToken) is string[] { Length: > 0 } missing)
        {
            throw new InvalidOperationException(
                $"The cloud tables {string.Join(", ", missing)} do not exist, and this role may not create them: " +
                "create the schema as its owner first (infra/postgres/roles.sql).");
        }
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
