using System.Security.Cryptography;
using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.Verification;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Engram.Pipeline.Integration.Tests;

[CollectionDefinition(ServersFixture.Collection)]
public sealed class ServersCollection : ICollectionFixture<ServersFixture>;

/// <summary>The two backends every scenario that does not reach into the broker runs on.</summary>
public static class Backends
{
    public const string RabbitMq = "rabbitmq+postgresql";
    public const string Embedded = "embedded";
}

/// <summary>
/// One scenario's private world, with the pipeline hosted by the production code: on the shared
/// servers (its own RabbitMQ virtual host and PostgreSQL database), or on the embedded default
/// (in-memory transport, SQLite cloud store); device files in a temp directory either way.
/// </summary>
public sealed class PipelineWorld : IAsyncDisposable
{
    private readonly TestServers? _servers;
    private readonly string _name;
    private readonly DirectoryInfo _work;

    private PipelineWorld(TestServers? servers, string name, DirectoryInfo work, PipelineCluster cluster)
    {
        _servers = servers;
        _name = name;
        _work = work;
        Cluster = cluster;
    }

    public PipelineCluster Cluster { get; }

    public string WorkDirectory => _work.FullName;

    public static async Task<PipelineWorld> CreateAsync(ServersFixture fixture, string scenario, int ingestProcesses,
        IReadOnlyDictionary<string, string?>? deviceSettings = null, string backend = Backends.RabbitMq) =>
        await CreateAsync(backend == Backends.RabbitMq ? await fixture.GetAsync() : null, scenario, ingestProcesses, deviceSettings);

    /// <summary>
    /// A world on <paramref name="servers"/>, or on the embedded default when there are none; <paramref name="cloudDbOptions"/>
    /// are Npgsql connection string keywords the ingest adds (e.g. <c>Command Timeout=2</c>).
    /// </summary>
    public static async Task<PipelineWorld> CreateAsync(TestServers? servers, string scenario, int ingestProcesses,
        IReadOnlyDictionary<string, string?>? deviceSettings = null, IReadOnlyDictionary<string, string?>? ingestSettings = null,
        string? cloudDbOptions = null)
    {
        var name = ServersFixture.UniqueName(scenario);
        var work = Directory.CreateTempSubdirectory($"engram-{name}-");
        Uri? rabbit = null;
        string? cloudDb = null;
        if (servers is not null)
        {
            rabbit = await servers.CreateVirtualHostAsync(name);
            cloudDb = await servers.CreateDatabaseAsync(name);
            cloudDb = cloudDbOptions is null ? cloudDb : $"{cloudDb};{cloudDbOptions}";
        }
        var cluster = new PipelineCluster(new ClusterSettings(rabbit, cloudDb, work.FullName)
        {
            IngestProcesses = ingestProcesses,
            DeviceSettings = deviceSettings ?? new Dictionary<string, string?>(),
            IngestSettings = ingestSettings ?? new Dictionary<string, string?>(),
        });
        return new PipelineWorld(servers, name, work, cluster);
    }

    /// <summary>Checks I1–I6 from the databases and fails with every verdict if one fails.</summary>
    public Task<IReadOnlyList<Verdict>> AssertInvariantsAsync() => AssertInvariantsAsync(Cluster);

    /// <inheritdoc cref="AssertInvariantsAsync()"/>
    public static async Task<IReadOnlyList<Verdict>> AssertInvariantsAsync(PipelineCluster cluster)
    {
        var verdicts = await InvariantChecker.CheckAllAsync(cluster.Cloud, await cluster.DatabasesAsync(CancellationToken.None),
            CancellationToken.None);
        var report = string.Join('\n', verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}"));
        Assert.True(verdicts.All(v => v.Pass), report);
        return verdicts;
    }

    /// <summary>This world's RabbitMQ virtual host.</summary>
    public string VirtualHost => _name;

    /// <summary>The shared servers (RabbitMQ backend only).</summary>
    public TestServers Servers => _servers ?? throw new InvalidOperationException("The embedded backend has no servers.");

    /// <summary>Deletes every message waiting in a queue of this world's virtual host; returns how many there were.</summary>
    public Task<long> PurgeQueueAsync(string queue) =>
        (_servers ?? throw new InvalidOperationException("The embedded backend has no broker queues to purge."))
        .PurgeQueueAsync(_name, queue, TimeSpan.FromSeconds(30));

    /// <summary>
    /// Gives a device its own RabbitMQ account on this world's virtual host, granted <paramref name="targets"/>,
    /// as <c>engram-pipeline device-user add</c> does; returns the AMQP URI the device connects with.
    /// </summary>
    public async Task<Uri> AddDeviceAccountAsync(string deviceId, params string[] targets)
    {
        var broker = Cluster.Settings.RabbitMqUri ?? throw new InvalidOperationException("The embedded backend has no broker accounts.");
        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        await using var accounts = new DeviceAccounts(broker, Servers.ManagementUri, Cluster.Settings.CloudDb!);
        await accounts.AddAsync(deviceId, password, targets, CancellationToken.None);
        return new UriBuilder(broker) { UserName = deviceId, Password = password }.Uri;
    }

    /// <summary>
    /// The cloud tables, made by their owner, and the <c>engram_ingest</c> role of infra/postgres/roles.sql
    /// (a cluster-wide role: its password is set anew); returns the role's connection string.
    /// </summary>
    public async Task<string> CreateIngestRoleAsync()
    {
        var owner = Cluster.Settings.CloudDb ?? throw new InvalidOperationException("The embedded backend has no database roles.");
        await using var dataSource = NpgsqlDataSource.Create(owner);
        await new PostgresSchema(dataSource, NullLogger<PostgresSchema>.Instance).EnsureCreatedAsync(CancellationToken.None);
        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var roles = await File.ReadAllTextAsync(Path.Combine(RepositoryRoot.Find(), "infra", "postgres", "roles.sql"));
        await using (var command = dataSource.CreateCommand($"{roles}; ALTER ROLE engram_ingest PASSWORD '{password}'"))
        {
            await command.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(owner) { Username = "engram_ingest", Password = password }.ConnectionString;
    }

    /// <summary>Runs a query that returns one number against the cloud database, whichever backend it is.</summary>
    public async Task<long> CloudScalarAsync(string sql)
    {
        if (Cluster.Settings.CloudDb is { } cloudDb)
        {
            await using var connection = new NpgsqlConnection(cloudDb);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            return (long)(await command.ExecuteScalarAsync())!;
        }
        await using var sqlite = new SqliteConnection($"Data Source={Path.Combine(WorkDirectory, "cloud.db")};Mode=ReadOnly");
        await sqlite.OpenAsync();
        await using var query = sqlite.CreateCommand();
        query.CommandText = sql;
        return (long)(await query.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// The cloud seqs the devices have recorded for their own journal rows (of <paramref name="project"/>, or all):
    /// with I1 and I2, what the cloud log must hold, one row each.
    /// </summary>
    public Task<long> MappedAsync(string? project = null) =>
        SumOverDevicesAsync("SELECT COUNT(*) FROM sync_seq_mapping WHERE $project IS NULL OR target_key = 'cloud:' || $project", project);

    /// <summary>
    /// The journal rows of <paramref name="project"/> (or all) the devices' Engram still holds to sync, not quarantined:
    /// rows Engram removed after journaling them (a superseded session upsert) are not counted.
    /// </summary>
    public Task<long> JournaledAsync(string? project = null) =>
        SumOverDevicesAsync("""
            SELECT COUNT(*) FROM sync_mutations
            WHERE target_key = 'cloud' AND disposition = 'pending' AND ($project IS NULL OR project = $project)
            """, project);

    /// <summary>
    /// Checks the devices' seqs against their journals: at least every journal row still there has its seq, and no
    /// more seqs were recorded than the <paramref name="journaled"/> rows Engram ever journaled.
    /// </summary>
    public async Task AssertEveryJournalRowMappedAsync(long journaled, string? project = null)
    {
        var mapped = await MappedAsync(project);
        Assert.InRange(mapped, await JournaledAsync(project), journaled);
        Assert.True(mapped > 0, "nothing was pushed");
    }

    private async Task<long> SumOverDevicesAsync(string sql, string? project)
    {
        long sum = 0;
        foreach (var device in Cluster.Devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly;Pooling=False");
            await connection.OpenAsync();
            await using var count = connection.CreateCommand();
            count.CommandText = sql;
            count.Parameters.AddWithValue("$project", project is null ? DBNull.Value : project);
            sum += (long)(await count.ExecuteScalarAsync())!;
        }
        return sum;
    }

    public async ValueTask DisposeAsync()
    {
        await Cluster.DisposeAsync();
        if (_servers is not null)
        {
            await _servers.DeleteVirtualHostAsync(_name);
            await _servers.DropDatabaseAsync(_name);
        }
        _work.Delete(recursive: true);
    }
}
