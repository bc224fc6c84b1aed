using Engram.Pipeline.Cli.Simulation;
using Engram.Pipeline.Cli.Verification;
using Engram.Pipeline.Testing;
using Npgsql;

namespace Engram.Pipeline.Integration.Tests;

[CollectionDefinition(ServersFixture.Collection)]
public sealed class ServersCollection : ICollectionFixture<ServersFixture>;

/// <summary>
/// One scenario's private world on the shared servers: its own RabbitMQ virtual host, its own
/// PostgreSQL database and its own device files, with the pipeline hosted by the production code.
/// </summary>
public sealed class PipelineWorld : IAsyncDisposable
{
    private readonly TestServers _servers;
    private readonly string _name;
    private readonly DirectoryInfo _work;

    private PipelineWorld(TestServers servers, string name, DirectoryInfo work, PipelineCluster cluster)
    {
        _servers = servers;
        _name = name;
        _work = work;
        Cluster = cluster;
    }

    public PipelineCluster Cluster { get; }

    public string CloudDb => Cluster.Settings.CloudDb;

    public string WorkDirectory => _work.FullName;

    public static async Task<PipelineWorld> CreateAsync(ServersFixture fixture, string scenario, int ingestProcesses,
        IReadOnlyDictionary<string, string?>? deviceSettings = null)
    {
        var servers = fixture.Servers;
        var name = ServersFixture.UniqueName(scenario);
        var rabbit = await servers.CreateVirtualHostAsync(name);
        var cloudDb = await servers.CreateDatabaseAsync(name);
        var work = Directory.CreateTempSubdirectory($"engram-{name}-");
        var cluster = new PipelineCluster(new ClusterSettings(rabbit, cloudDb, work.FullName)
        {
            IngestProcesses = ingestProcesses,
            DeviceSettings = deviceSettings ?? new Dictionary<string, string?>(),
        });
        return new PipelineWorld(servers, name, work, cluster);
    }

    /// <summary>Checks I1–I4 (and the cursor rule) from the databases and fails with every verdict if one fails.</summary>
    public async Task<IReadOnlyList<Verdict>> AssertInvariantsAsync()
    {
        var verdicts = await InvariantChecker.CheckPushAsync(CloudDb,
            Cluster.Devices.Select(d => new DeviceDatabaseRef(d.DeviceId, d.Target, d.DatabasePath)).ToList(),
            CancellationToken.None);
        var report = string.Join('\n', verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}"));
        Assert.True(verdicts.All(v => v.Pass), report);
        return verdicts;
    }

    /// <summary>Deletes every message waiting in a queue of this world's virtual host; returns how many there were.</summary>
    public Task<long> PurgeQueueAsync(string queue) => _servers.PurgeQueueAsync(_name, queue, TimeSpan.FromSeconds(30));

    public async Task<long> CloudScalarAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(CloudDb);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public async ValueTask DisposeAsync()
    {
        await Cluster.DisposeAsync();
        await _servers.DeleteVirtualHostAsync(_name);
        await _servers.DropDatabaseAsync(_name);
        _work.Delete(recursive: true);
    }
}
