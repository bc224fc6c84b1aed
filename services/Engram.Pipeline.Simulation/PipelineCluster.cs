using System.Globalization;
using Engram.Pipeline.Cloud;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.Hosting;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Simulation.Verification;
using Engram.Pipeline.Simulation.EmbeddedCloud;
using MassTransit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Engram.Pipeline.Simulation;

/// <summary>
/// What to run. With a broker and a cloud database it runs against them; with neither it runs on the
/// embedded default: MassTransit's in-memory transport and a SQLite cloud store in the work directory.
/// </summary>
public sealed record ClusterSettings(Uri? RabbitMqUri, string? CloudDb, string WorkDirectory)
{
    public bool Embedded => RabbitMqUri is null;

    /// <summary>Competing cloud ingest processes (with RabbitMQ; the embedded bus has one).</summary>
    public int IngestProcesses { get; init; } = 1;

    /// <summary>
    /// Extra configuration for every device (e.g. Publisher:ResendAfter). A <c>ConnectionStrings:DeviceDb</c> here gives
    /// every device's connection string its keywords (e.g. <c>Default Timeout=1</c>); the Data Source is always the
    /// device's own file.
    /// </summary>
    public IReadOnlyDictionary<string, string?> DeviceSettings { get; init; } = new Dictionary<string, string?>();

    /// <summary>
    /// Extra configuration for every ingest process. By default devices are not authorised
    /// (Ingest:AuthoriseDevices false): the simulated fleet shares one trusted broker account.
    /// </summary>
    public IReadOnlyDictionary<string, string?> IngestSettings { get; init; } = new Dictionary<string, string?>();

    /// <summary>
    /// The nodes (<c>host:port</c>) of a clustered broker, whose user, password and virtual host
    /// <see cref="RabbitMqUri"/> names. The hosts are spread over them in turn, each failing over to the others.
    /// </summary>
    public IReadOnlyList<string> RabbitMqNodes { get; init; } = [];

    public LogLevel LogLevel { get; init; } = LogLevel.Warning;
}

/// <summary>
/// One device: its Engram database, the device that syncs it, and the Engram application that writes it (from this
/// process, on its own connection, as the real application does from its own).
/// </summary>
public sealed record DeviceNode(string DeviceId, string DatabasePath, DeviceRuntime Runtime, EngramWriter Engram);

/// <summary>
/// Cloud ingest and devices hosted side by side in this process, built by the same code the real
/// executables run. With RabbitMQ every ingest process and every device is a host of its own with
/// its own broker connection; embedded, they share one in-memory bus.
/// </summary>
public sealed class PipelineCluster : IAsyncDisposable
{
    private readonly ClusterSettings _settings;
    private readonly List<IHost> _ingest = [];
    private readonly List<DeviceNode> _devices = [];
    private readonly List<Func<Task>> _deviceStops = [];

    private readonly NpgsqlDataSource? _cloudDataSource;
    private int _hostsBuilt;

    public PipelineCluster(ClusterSettings settings)
    {
        if (settings.RabbitMqUri is null != settings.CloudDb is null)
        {
            throw new ArgumentException("Give both a broker and a cloud database, or neither for the embedded default.", nameof(settings));
        }
        _settings = settings;
        if (settings.CloudDb is { } cloudDb)
        {
            _cloudDataSource = NpgsqlDataSource.Create(cloudDb);
            Cloud = new PostgresCloudStore(_cloudDataSource);
        }
        else
        {
            Cloud = new SqliteCloudStore(Path.Combine(settings.WorkDirectory, "cloud.db"));
        }
    }

    public ClusterSettings Settings => _settings;

    public IReadOnlyList<IHost> Ingest => _ingest;

    public IReadOnlyList<DeviceNode> Devices => _devices;

    /// <summary>The cloud log, read through the same kind of store the ingest writes with.</summary>
    public ICloudStore Cloud { get; }

    public async Task StartIngestAsync(CancellationToken ct)
    {
        if (_settings.Embedded)
        {
            var host = Build(IngestValues(), (services, _) =>
            {
                services.AddCloudLog();
                services.AddSingleton(Cloud);
                services.AddMassTransit(bus =>
                {
                    bus.AddCloudConsumers();
                    bus.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));
                });
            });
            await host.StartAsync(ct);
            _ingest.Add(host);
            return;
        }
        for (var i = 0; i < _settings.IngestProcesses; i++)
        {
            var host = Build(IngestValues(), (services, configuration) => services.AddCloudIngest(configuration));
            await host.StartAsync(ct);
            _ingest.Add(host);
        }
    }

    /// <summary>
    /// Starts a device on the Engram database <c>{deviceId}.db</c> of the work directory, or of
    /// <paramref name="databaseDirectory"/> (made on the first start, with upstream's schema), syncing every enrolled
    /// project, or only <paramref name="target"/>. With RabbitMQ it connects as <paramref name="account"/> if given
    /// (its own account), else as the cluster's.
    /// </summary>
    public async Task<DeviceNode> StartDeviceAsync(string deviceId, CancellationToken ct, Uri? account = null, string? target = null, int seed = 1,
        string? databaseDirectory = null)
    {
        var path = Path.Combine(databaseDirectory ?? _settings.WorkDirectory, $"{deviceId}.db");
        var connectionString = new SqliteConnectionStringBuilder(_settings.DeviceSettings.GetValueOrDefault("ConnectionStrings:DeviceDb"))
        {
            DataSource = path,
        }.ToString();
        var values = new Dictionary<string, string?>(_settings.DeviceSettings)
        {
            ["ConnectionStrings:DeviceDb"] = connectionString,
            ["Device:Id"] = deviceId,
            ["Device:Target"] = target,
        };
        if (account is not null)
        {
            values["RabbitMq:Uri"] = account.ToString();
        }
        DeviceRuntime runtime;
        if (_settings.Embedded)
        {
            // Devices join the one in-memory bus; their options come from the same configuration keys.
            var shared = _ingest[0].Services;
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
            runtime = DeviceServices.CreateRuntime(connectionString,
                Bind<DeviceOptions>(configuration, DeviceOptions.Section),
                Bind<PublisherOptions>(configuration, PublisherOptions.Section),
                Bind<PullerOptions>(configuration, PullerOptions.Section),
                shared.GetRequiredService<TimeProvider>(), shared.GetRequiredService<ILoggerFactory>());
            var bus = shared.GetRequiredService<IBus>();
            var handle = bus.ConnectReceiveEndpoint(runtime.QueueName, runtime.ConfigureEndpoint);
            await handle.Ready.WaitAsync(ct);
            var stopping = new CancellationTokenSource();
            var running = Task.Run(() => runtime.RunAsync(bus, stopping.Token), CancellationToken.None);
            _deviceStops.Add(async () =>
            {
                await stopping.CancelAsync();
                await running;
                await handle.StopAsync(CancellationToken.None);
                stopping.Dispose();
            });
        }
        else
        {
            var host = Build(values, (services, configuration) => services.AddDevice(configuration));
            await host.StartAsync(ct);
            _deviceStops.Add(() => StopAsync(host));
            runtime = host.Services.GetRequiredService<DeviceRuntime>();
        }
        var node = new DeviceNode(deviceId, path, runtime, new EngramWriter(path, new Random(seed)));
        _devices.Add(node);
        return node;
    }

    /// <summary>
    /// Waits for quiescence: no device has a journal row the cloud has not answered or a deferred row it could replay,
    /// and every device's cursor has reached its projects' heads.
    /// </summary>
    public async Task WaitUntilSettledAsync(TimeSpan deadline, CancellationToken ct, bool untilCursorsAtHead = true)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(deadline);
        try
        {
            while (await LagAsync(untilCursorsAtHead, timeout.Token) is var lag && lag.Pending + lag.Behind + lag.Deferred > 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), timeout.Token);
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            var (pending, behind, deferred) = await LagAsync(untilCursorsAtHead, ct);
            throw new TimeoutException($"After {deadline.TotalSeconds:0} s, {pending} journal rows were still unanswered, " +
                                       $"{behind} cloud seqs not yet pulled and {deferred} deferred rows whose parent is here not yet replayed.");
        }
    }

    /// <summary>What the devices still have to do: journal rows unanswered, seqs between cursors and heads, deferred rows to replay.</summary>
    public async Task<(long Pending, long Behind, long Deferred)> LagAsync(bool includeCursors, CancellationToken ct)
    {
        long pending = 0, behind = 0, deferred = 0;
        // One head per target, however many devices share it.
        var heads = new Dictionary<string, long>();
        foreach (var device in await DatabasesAsync(ct))
        {
            await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly;Pooling=False");
            await connection.OpenAsync(ct);
            foreach (var project in device.Projects)
            {
                var counts = SyncCounts.Read(connection, new SyncTarget(project));
                pending += counts.Pending;
                deferred += SyncCounts.Replayable(connection, new SyncTarget(project));
                if (includeCursors)
                {
                    if (!heads.TryGetValue(project, out var head))
                    {
                        heads[project] = head = await Cloud.HeadAsync(project, ct);
                    }
                    behind += Math.Max(0, head - counts.Cursor);
                }
            }
        }
        return (pending, behind, deferred);
    }

    /// <summary>Each device's database and the projects its device syncs: the one it was started with, or every enrolled one.</summary>
    public async Task<IReadOnlyList<DeviceDatabaseRef>> DatabasesAsync(CancellationToken ct)
    {
        var databases = new List<DeviceDatabaseRef>();
        foreach (var device in _devices)
        {
            databases.Add(new DeviceDatabaseRef(device.DeviceId, device.DatabasePath, await device.Runtime.Targets.RefreshAsync(ct) is var targets
                ? targets.Select(t => t.Project).ToList()
                : []));
        }
        return databases;
    }

    private IHost Build(Dictionary<string, string?> values, Action<IServiceCollection, IConfiguration> addService)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var all = new Dictionary<string, string?>(values);
        if (!_settings.Embedded)
        {
            all.TryAdd("RabbitMq:Uri", _settings.RabbitMqUri!.ToString());
            all.TryAdd("ConnectionStrings:CloudDb", _settings.CloudDb);
            if (_settings.RabbitMqNodes is { Count: > 0 } nodes)
            {
                // This host's node first, then the others in order, as a load balancer would spread them.
                var first = _hostsBuilt++ % nodes.Count;
                var node = nodes[first].Split(':');
                all["RabbitMq:Uri"] = new UriBuilder(_settings.RabbitMqUri) { Host = node[0], Port = int.Parse(node[1], CultureInfo.InvariantCulture) }
                    .Uri.ToString();
                all["RabbitMq:ClusterNodes"] = string.Join(',', nodes.Skip(first + 1).Concat(nodes.Take(first)));
            }
        }
        builder.Configuration.AddInMemoryCollection(all);
        builder.Logging.AddOneLineConsole().SetMinimumLevel(_settings.LogLevel);
        addService(builder.Services, builder.Configuration);
        return builder.Build();
    }

    private Dictionary<string, string?> IngestValues()
    {
        var values = new Dictionary<string, string?>(_settings.IngestSettings);
        values.TryAdd("Ingest:AuthoriseDevices", "false");
        return values;
    }

    /// <summary>
    /// Stops every device as its process would stop (the lease released) and closes their Engram writers; the
    /// databases stay, for devices started again on them.
    /// </summary>
    public async Task StopDevicesAsync()
    {
        foreach (var device in _devices)
        {
            device.Engram.Dispose();
        }
        foreach (var stop in _deviceStops)
        {
            await stop();
        }
        _devices.Clear();
        _deviceStops.Clear();
        SqliteConnection.ClearAllPools();
    }

    public async ValueTask DisposeAsync()
    {
        await StopDevicesAsync();
        foreach (var host in _ingest)
        {
            await StopAsync(host);
        }
        if (_cloudDataSource is not null)
        {
            await _cloudDataSource.DisposeAsync();
        }
        SqliteConnection.ClearAllPools();
    }

    private static async Task StopAsync(IHost host)
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

    private static T Bind<T>(IConfiguration configuration, string section) where T : new() =>
        configuration.GetSection(section).Get<T>() ?? new T();
}
