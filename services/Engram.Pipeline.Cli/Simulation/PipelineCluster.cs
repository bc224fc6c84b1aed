using Engram.Pipeline.CloudIngest;
using Engram.Pipeline.Device;
using Engram.Pipeline.Device.Journal;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Engram.Pipeline.Cli.Simulation;

/// <summary>What to run: the broker and database to use, and the processes to host.</summary>
public sealed record ClusterSettings(Uri RabbitMqUri, string CloudDb, string WorkDirectory)
{
    public int IngestProcesses { get; init; } = 1;

    /// <summary>Extra configuration for every device (e.g. Publisher:ResendAfter).</summary>
    public IReadOnlyDictionary<string, string?> DeviceSettings { get; init; } = new Dictionary<string, string?>();

    public LogLevel LogLevel { get; init; } = LogLevel.Warning;
}

/// <summary>One device process: its host, its database file and its identity.</summary>
public sealed record DeviceNode(string DeviceId, string Target, string DatabasePath, IHost Host)
{
    public DeviceJournal Journal => Host.Services.GetRequiredService<DeviceJournal>();

    public string ConnectionString => $"Data Source={DatabasePath}";
}

/// <summary>
/// Cloud ingest processes and device processes hosted side by side in this process, each with its
/// own service provider and broker connection, built by the same code the real executables run.
/// </summary>
public sealed class PipelineCluster(ClusterSettings settings) : IAsyncDisposable
{
    private readonly List<IHost> _ingest = [];
    private readonly List<DeviceNode> _devices = [];

    public IReadOnlyList<IHost> Ingest => _ingest;

    public IReadOnlyList<DeviceNode> Devices => _devices;

    public ClusterSettings Settings => settings;

    public async Task StartIngestAsync(CancellationToken ct)
    {
        for (var i = 0; i < settings.IngestProcesses; i++)
        {
            var host = Build((services, configuration) => services.AddCloudIngest(configuration), []);
            await host.StartAsync(ct);
            _ingest.Add(host);
        }
    }

    public async Task<DeviceNode> StartDeviceAsync(string deviceId, string target, CancellationToken ct)
    {
        var path = Path.Combine(settings.WorkDirectory, $"{deviceId}.db");
        var values = new Dictionary<string, string?>(settings.DeviceSettings)
        {
            ["ConnectionStrings:DeviceDb"] = $"Data Source={path}",
            ["Device:Id"] = deviceId,
            ["Device:Target"] = target,
        };
        var host = Build((services, configuration) => services.AddDevice(configuration), values);
        await host.StartAsync(ct);
        var node = new DeviceNode(deviceId, target, path, host);
        _devices.Add(node);
        return node;
    }

    /// <summary>Waits until no device has a journal row the cloud has not answered.</summary>
    public async Task WaitUntilSettledAsync(TimeSpan deadline, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(deadline);
        try
        {
            while (await PendingAsync(timeout.Token) is > 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), timeout.Token);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"{await PendingAsync(ct)} journal rows were still unanswered after {deadline.TotalSeconds:0} s.");
        }
    }

    /// <summary>Journal rows of every device that the cloud has not answered yet.</summary>
    public async Task<long> PendingAsync(CancellationToken ct)
    {
        long pending = 0;
        foreach (var device in _devices)
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly");
            await connection.OpenAsync(ct);
            await using var count = connection.CreateCommand();
            count.CommandText = """
                SELECT COUNT(*) FROM sync_mutations
                WHERE source = 'local' AND acked_at IS NULL AND rejected_at IS NULL
                """;
            pending += (long)(await count.ExecuteScalarAsync(ct))!;
        }
        return pending;
    }

    private IHost Build(Action<IServiceCollection, IConfiguration> addService, Dictionary<string, string?> values)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>(values)
        {
            ["RabbitMq:Uri"] = settings.RabbitMqUri.ToString(),
            ["ConnectionStrings:CloudDb"] = settings.CloudDb,
        });
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(settings.LogLevel);
        addService(builder.Services, builder.Configuration);
        return builder.Build();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in _devices.Select(d => d.Host).Concat(_ingest))
        {
            try
            {
                await host.StopAsync(TimeSpan.FromSeconds(10));
            }
            finally
            {
                host.Dispose();
            }
        }
        SqliteConnection.ClearAllPools();
    }
}
