using Engram.Pipeline.CloudIngest.Push;
using Engram.Pipeline.CloudIngest.Storage;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Engram.Pipeline.CloudIngest.Tests;

[CollectionDefinition(ServersFixture.Collection)]
public sealed class ServersCollection : ICollectionFixture<ServersFixture>;

/// <summary>
/// The push consumer on MassTransit's in-memory test harness, over a real PostgreSQL database of its own.
/// </summary>
public sealed class IngestHarness : IAsyncDisposable
{
    private readonly ServiceProvider _provider;
    private readonly TestServers _servers;
    private readonly string _database;

    private IngestHarness(ServiceProvider provider, TestServers servers, string database, NpgsqlDataSource dataSource)
    {
        _provider = provider;
        _servers = servers;
        _database = database;
        DataSource = dataSource;
    }

    public ITestHarness Harness => _provider.GetRequiredService<ITestHarness>();

    public NpgsqlDataSource DataSource { get; }

    public PushIngestor Ingestor => _provider.GetRequiredService<PushIngestor>();

    public static async Task<IngestHarness> StartAsync(ServersFixture fixture, IngestOptions? options = null)
    {
        var name = ServersFixture.UniqueName("ingest");
        var connectionString = await fixture.Servers.CreateDatabaseAsync(name);
        var dataSource = NpgsqlDataSource.Create(connectionString);
        await new CloudSchema(dataSource, NullLogger<CloudSchema>.Instance).EnsureCreatedAsync(CancellationToken.None);

        var provider = new ServiceCollection()
            .AddSingleton(dataSource)
            .AddSingleton(Options.Create(options ?? new IngestOptions()))
            .AddSingleton(TimeProvider.System)
            .AddSingleton<PushIngestor>()
            .AddMassTransitTestHarness(x => x.AddConsumer<PushMutationsConsumer, PushMutationsConsumerDefinition>())
            .BuildServiceProvider(validateScopes: true);
        var harness = new IngestHarness(provider, fixture.Servers, name, dataSource);
        await harness.Harness.Start();
        return harness;
    }

    /// <summary>Sends a batch as a request and returns whichever answer the consumer gives.</summary>
    public async Task<object> PushAsync(PushMutations batch)
    {
        var client = Harness.GetRequestClient<PushMutations>();
        var response = await client.GetResponse<PushAccepted, PushRejected>(batch);
        return response.Message;
    }

    public async Task<long> ScalarAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public static PushMutations Batch(string device, long previous, params Mutation[] mutations) =>
        new() { TargetKey = "team", DeviceId = device, PreviousLocalSeq = previous, Mutations = mutations };

    public static Mutation Upsert(long localSeq, string key = "k", string payload = """{"title":"x"}""") => new()
    {
        LocalSeq = localSeq, Entity = "observation", Op = "upsert", EntityKey = key, Payload = payload,
        OccurredAt = DateTimeOffset.UnixEpoch,
    };

    public async ValueTask DisposeAsync()
    {
        await Harness.Stop();
        await _provider.DisposeAsync();
        await DataSource.DisposeAsync();
        await _servers.DropDatabaseAsync(_database);
    }
}
