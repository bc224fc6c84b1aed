using Engram.Pipeline.Cloud;
using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation.EmbeddedCloud;
using Engram.Pipeline.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Engram.Pipeline.CloudIngest.Tests;

[CollectionDefinition(ServersFixture.Collection)]
public sealed class ServersCollection : ICollectionFixture<ServersFixture>;

/// <summary>
/// The cloud consumers on MassTransit's in-memory test harness, over a real cloud store of their own:
/// a PostgreSQL database (<c>postgres</c>) or an embedded SQLite file (<c>sqlite</c>).
/// </summary>
public sealed class IngestHarness : IAsyncDisposable
{
    public const string Postgres = "postgres";
    public const string Sqlite = "sqlite";

    private readonly ServiceProvider _provider;
    private readonly Func<string, Task<object?>> _query;
    private readonly Func<Task> _cleanUp;

    private IngestHarness(ServiceProvider provider, Func<string, Task<object?>> query, Func<Task> cleanUp)
    {
        _provider = provider;
        _query = query;
        _cleanUp = cleanUp;
    }

    public ITestHarness Harness => _provider.GetRequiredService<ITestHarness>();

    public PushIngestor Ingestor => _provider.GetRequiredService<PushIngestor>();

    public DeviceAuthoriser Authoriser => _provider.GetRequiredService<DeviceAuthoriser>();

    /// <summary>Starts the consumers on a new cloud store of <paramref name="backend"/>.</summary>
    /// <param name="fixture">Where the PostgreSQL backend gets its database.</param>
    /// <param name="backend"><see cref="Postgres"/> or <see cref="Sqlite"/>.</param>
    /// <param name="options">The ingest's options; by default authorisation is off (the in-memory bus carries no user_id).</param>
    /// <param name="bus">Changes the in-memory bus before its endpoints are configured (a publish filter that fails, say).</param>
    public static async Task<IngestHarness> StartAsync(ServersFixture fixture, string backend, IngestOptions? options = null,
        Action<IInMemoryBusFactoryConfigurator>? bus = null)
    {
        var (store, query, cleanUp) = backend switch
        {
            Postgres => await PostgresAsync(fixture),
            Sqlite => SqliteStore(),
            _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, "postgres or sqlite"),
        };
        var provider = new ServiceCollection()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().Build())
            .AddCloudLog()
            .AddSingleton(store)
            // The in-memory harness carries no AMQP user_id; authorisation has tests of its own.
            .AddSingleton(Options.Create(options ?? new IngestOptions { AuthoriseDevices = false }))
            .AddMassTransitTestHarness(x =>
            {
                x.AddCloudConsumers();
                x.UsingInMemory((context, cfg) =>
                {
                    bus?.Invoke(cfg);
                    cfg.ConfigureEndpoints(context);
                });
            })
            .BuildServiceProvider(validateScopes: true);
        var harness = new IngestHarness(provider, query, cleanUp);
        await harness.Harness.Start();
        return harness;
    }

    private static async Task<(ICloudStore, Func<string, Task<object?>>, Func<Task>)> PostgresAsync(ServersFixture fixture)
    {
        var name = ServersFixture.UniqueName("ingest");
        var servers = await fixture.GetAsync();
        var dataSource = NpgsqlDataSource.Create(await servers.CreateDatabaseAsync(name));
        await new PostgresSchema(dataSource, NullLogger<PostgresSchema>.Instance).EnsureCreatedAsync(CancellationToken.None);
        return (new PostgresCloudStore(dataSource), async sql =>
        {
            await using var command = dataSource.CreateCommand(sql);
            return await command.ExecuteScalarAsync();
        }, async () =>
        {
            await dataSource.DisposeAsync();
            await servers.DropDatabaseAsync(name);
        });
    }

    private static (ICloudStore, Func<string, Task<object?>>, Func<Task>) SqliteStore()
    {
        var directory = Directory.CreateTempSubdirectory("engram-cloud-");
        var path = Path.Combine(directory.FullName, "cloud.db");
        return (new SqliteCloudStore(path), async sql =>
        {
            await using var connection = new SqliteConnection($"Data Source={path}");
            await connection.OpenAsync();
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            return await command.ExecuteScalarAsync();
        }, () =>
        {
            SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
            return Task.CompletedTask;
        });
    }

    /// <summary>Sends a batch as a request and returns whichever answer the consumer gives.</summary>
    public async Task<object> PushAsync(PushMutations batch)
    {
        var client = Harness.GetRequestClient<PushMutations>();
        var response = await client.GetResponse<PushAccepted, PushRejected>(batch);
        return response.Message;
    }

    public async Task<MutationsPage> PullAsync(string device, long afterSeq, int limit = 1000, string target = "team")
    {
        var client = Harness.GetRequestClient<PullMutations>();
        var response = await client.GetResponse<MutationsPage>(
            new PullMutations { TargetKey = target, DeviceId = device, AfterSeq = afterSeq, Limit = limit });
        return response.Message;
    }

    public async Task<long> ScalarAsync(string sql) => (long)(await _query(sql))!;

    /// <summary>Runs a statement against the cloud store, whichever backend it is.</summary>
    public Task ExecuteAsync(string sql) => _query(sql);

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
        await _cleanUp();
    }
}
