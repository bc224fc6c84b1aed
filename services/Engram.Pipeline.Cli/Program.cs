using System.CommandLine;
using System.Text.Json;
using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.Hosting;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EmbeddedCloud;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Npgsql;

var devices = new Option<int>("--devices") { Description = "Devices in the fleet", DefaultValueFactory = _ => 3 };
var mutations = new Option<int>("--mutations") { Description = "Mutations Engram journals on each device", DefaultValueFactory = _ => 2_000 };
var ingest = new Option<int>("--ingest") { Description = "Competing cloud ingest processes (with RabbitMQ)", DefaultValueFactory = _ => 2 };
var json = new Option<FileInfo?>("--json") { Description = "Also write the verdict and the figures as JSON to this file" };
var simulate = new Command("simulate",
    "Run a fleet of devices end to end on Engram databases, with Engram used on each, and check invariants I1-I6. Uses " +
    "RabbitMq__Uri and ConnectionStrings__CloudDb when both are set; otherwise the embedded default (in-memory transport, SQLite cloud store).")
    { devices, mutations, ingest, json };
simulate.SetAction(async (parsed, ct) =>
{
    var configuration = new ConfigurationBuilder().AddEnvironmentVariables().Build();
    var rabbit = configuration["RabbitMq:Uri"];
    var cloudDb = configuration.GetConnectionString("CloudDb");
    if (string.IsNullOrWhiteSpace(rabbit) != string.IsNullOrWhiteSpace(cloudDb))
    {
        Console.Error.WriteLine("Set both RabbitMq__Uri and ConnectionStrings__CloudDb, or neither for the embedded default.");
        return 2;
    }
    if (parsed.GetValue(devices) < 1 || parsed.GetValue(mutations) < 1 || parsed.GetValue(ingest) < 1)
    {
        Console.Error.WriteLine("--devices, --mutations and --ingest must be at least 1.");
        return 2;
    }
    var work = Directory.CreateTempSubdirectory("engram-simulate-");
    var settings = new ClusterSettings(string.IsNullOrWhiteSpace(rabbit) ? null : new Uri(rabbit), cloudDb, work.FullName)
    {
        IngestProcesses = parsed.GetValue(ingest),
    };
    var run = $"simulate-{DateTimeOffset.UtcNow:yyyyMMddHHmmss}";
    var options = new SimulationOptions(parsed.GetValue(devices), parsed.GetValue(mutations), [run, run + "-late"]);
    Console.WriteLine(settings.Embedded
        ? $"Embedded default: in-memory transport, SQLite cloud store; {options.Devices} devices x {options.MutationsPerDevice} mutations"
        : $"RabbitMQ + PostgreSQL, {settings.IngestProcesses} ingest processes; {options.Devices} devices x {options.MutationsPerDevice} mutations");
    Console.WriteLine($"Engram databases with projects {string.Join(" and ", options.Projects)} (the second enrolled while the devices run)");

    SimulationReport report;
    await using (var cluster = new PipelineCluster(settings))
    {
        var live = !Console.IsOutputRedirected;
        var progress = new Progress<SimulationProgress>(p =>
        {
            var line = $"{p.Elapsed.TotalSeconds,6:0.0} s  journaled {p.Journaled,8}  answered by the cloud {p.Answered,8}  seqs still to pull {p.Behind,8}";
            if (live)
            {
                Console.Write($"\r{line}");
            }
            else
            {
                Console.WriteLine(line);
            }
        });
        report = await SimulationRun.RunAsync(cluster, options, progress, ct);
    }

    Console.WriteLine();
    Console.WriteLine();
    foreach (var verdict in report.Verdicts)
    {
        Console.WriteLine($"{(verdict.Pass ? "PASS" : "FAIL"),-5} {verdict.Name,-22} {verdict.Detail}");
    }
    Console.WriteLine();
    Console.WriteLine($"{report.Mutations} mutations in {report.Elapsed.TotalSeconds:0.0} s: {report.MutationsPerSecond:0} mutations/s");
    Console.WriteLine($"journal commit -> PushAccepted recorded:      p50 {report.ToAccepted.P50:0} ms, p99 {report.ToAccepted.P99:0} ms ({report.ToAccepted.Samples} mutations)");
    Console.WriteLine($"journal commit -> searchable on another device: p50 {report.ToVisible.P50:0} ms, p99 {report.ToVisible.P99:0} ms ({report.ToVisible.Samples} applications)");
    Console.WriteLine($"Engram databases kept in {work.FullName}");

    if (parsed.GetValue(json) is { } file)
    {
        await File.WriteAllTextAsync(file.FullName, JsonSerializer.Serialize(new
        {
            backend = settings.Embedded ? "embedded" : "rabbitmq+postgresql",
            devices = options.Devices,
            mutations = report.Mutations,
            invariants = report.Verdicts.ToDictionary(v => v.Name, v => new { pass = v.Pass, detail = v.Detail }),
            mutationsPerSecond = report.MutationsPerSecond,
            latencyMs = new { p50 = report.ToAccepted.P50, p99 = report.ToAccepted.P99 },
            visibleLatencyMs = new { p50 = report.ToVisible.P50, p99 = report.ToVisible.P99 },
        }, new JsonSerializerOptions { WriteIndented = true }), ct);
    }
    return report.Pass ? 0 : 1;
});

var databases = new Option<FileInfo[]>("--db")
{
    Description = "An Engram database (repeat for several); default: ConnectionStrings__DeviceDb",
    AllowMultipleArgumentsPerToken = true,
};
var cloudOption = new Option<string?>("--cloud")
{
    Description = "The cloud, for its head: a PostgreSQL connection string or an embedded cloud.db; default: ConnectionStrings__CloudDb",
};
var statusJson = new Option<bool>("--json") { Description = "Print JSON for machines" };
var status = new Command("status",
    "Per device and project: rows pending, in flight, acked, rejected (with reasons), pulled, deferred and dead; unified cursor, cloud head, lag; who holds Engram's sync lease")
    { databases, cloudOption, statusJson };
status.SetAction(async (parsed, ct) =>
{
    var configuration = new ConfigurationBuilder().AddEnvironmentVariables().Build();
    var paths = parsed.GetValue(databases) is { Length: > 0 } given
        ? given.Select(f => f.FullName).ToList()
        : configuration.GetConnectionString("DeviceDb") is { } deviceDb
            ? [new SqliteConnectionStringBuilder(deviceDb).DataSource]
            : [];
    if (paths.Count == 0)
    {
        Console.Error.WriteLine("Name an Engram database with --db PATH (or ConnectionStrings__DeviceDb).");
        return 2;
    }
    var cloudSetting = parsed.GetValue(cloudOption) ?? configuration.GetConnectionString("CloudDb");
    await using var npgsql = cloudSetting is null || cloudSetting.EndsWith(".db", StringComparison.Ordinal)
        ? null : NpgsqlDataSource.Create(cloudSetting);
    ICloudStore? cloud = cloudSetting switch
    {
        null => null,
        _ when npgsql is null => File.Exists(cloudSetting) ? new SqliteCloudStore(cloudSetting)
            : throw new FileNotFoundException($"No embedded cloud store at {cloudSetting}."),
        _ => new PostgresCloudStore(npgsql),
    };

    var statuses = new List<DeviceStatus>();
    foreach (var path in paths)
    {
        try
        {
            statuses.AddRange(await DeviceStatus.ReadAsync(path, cloud is null ? null : cloud.HeadAsync, ct));
        }
        catch (Exception e) when (e is FileNotFoundException or SqliteException)
        {
            Console.Error.WriteLine($"{path}: {e.Message}");
            return 1;
        }
    }
    if (parsed.GetValue(statusJson))
    {
        Console.WriteLine(JsonSerializer.Serialize(statuses.Select(s => new
        {
            deviceId = s.DeviceId, project = s.Project, pending = s.Counts.Unsent, inFlight = s.Counts.InFlight, acked = s.Counts.Acked,
            rejected = s.Counts.Rejected, rejectedByReason = s.RejectedByReason, pulled = s.Counts.Pulled, deferred = s.Counts.Deferred,
            dead = s.Counts.Dead, unifiedCursor = s.Counts.Cursor, head = s.Counts.Head, headFromCloud = s.HeadFromCloud, lag = s.Counts.Lag,
            lastRefusal = s.LastRefusal, leaseOwner = s.LeaseOwner,
        }), new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }
    Console.WriteLine($"{"device",-20} {"project",-24} {"pending",8} {"in flight",9} {"acked",8} {"rejected",8} {"pulled",8} {"deferred",8} {"dead",6} {"cursor",8} {"head",8} {"lag",6}");
    foreach (var s in statuses)
    {
        var c = s.Counts;
        Console.WriteLine($"{s.DeviceId ?? "(none yet)",-20} {s.Project,-24} {c.Unsent,8} {c.InFlight,9} {c.Acked,8} {c.Rejected,8} {c.Pulled,8} {c.Deferred,8} {c.Dead,6} {c.Cursor,8} {c.Head,8}{(s.HeadFromCloud ? " " : "*")} {c.Lag,5}");
        foreach (var (reason, count) in s.RejectedByReason)
        {
            Console.WriteLine($"    rejected {reason}: {count}");
        }
        if (s.LastRefusal is { } refusal)
        {
            Console.WriteLine($"    last refusal: {refusal}");
        }
    }
    foreach (var lease in statuses.Select(s => s.LeaseOwner).Distinct())
    {
        Console.WriteLine(lease is null ? "Engram's sync lease: free" : $"Engram's sync lease: held by {lease}");
    }
    if (statuses.Any(s => !s.HeadFromCloud))
    {
        Console.WriteLine("* the last head the device heard of; give --cloud for the cloud's own");
    }
    return 0;
});

var deviceId = new Option<string>("--device") { Description = "The device id, which is also its RabbitMQ user name", Required = true };
var targets = new Option<string[]>("--target")
{
    Description = "A target the device may push to and pull from (repeat for several)", Required = true, AllowMultipleArgumentsPerToken = true,
};
var passwordStdin = new Option<bool>("--password-stdin") { Description = "Read the device's password from the first line of stdin" };
var addUser = new Command("add",
    "Create (or update) a device's own RabbitMQ account: the user, its permissions, its bindings, and its grants in the cloud " +
    "database. Password: ENGRAM_DEVICE_PASSWORD or --password-stdin. Uses RabbitMq__Uri (an administrator; its virtual host), " +
    "RabbitMq__ManagementUri and ConnectionStrings__CloudDb (the owner of the cloud tables).")
    { deviceId, targets, passwordStdin };
addUser.SetAction(async (parsed, ct) =>
{
    var device = parsed.GetValue(deviceId)!;
    if (DevicePermissions.DeviceIdProblem(device) is { } problem)
    {
        Console.Error.WriteLine($"Device id '{device}' {problem}.");
        return 2;
    }
    var password = parsed.GetValue(passwordStdin) ? Console.In.ReadLine() : Environment.GetEnvironmentVariable("ENGRAM_DEVICE_PASSWORD");
    if (string.IsNullOrEmpty(password))
    {
        Console.Error.WriteLine("Give the device's password in ENGRAM_DEVICE_PASSWORD or on stdin with --password-stdin.");
        return 2;
    }
    if (OpenDeviceAccounts() is not { } accounts)
    {
        return 2;
    }
    await using (accounts)
    {
        var granted = parsed.GetValue(targets)!;
        var permissions = await accounts.AddAsync(device, password, granted, ct);
        Console.WriteLine($"RabbitMQ user '{device}', permissions:");
        Console.WriteLine($"  configure  {permissions.Configure}");
        Console.WriteLine($"  write      {permissions.Write}");
        Console.WriteLine($"  read       {permissions.Read}");
        Console.WriteLine($"granted targets: {string.Join(", ", granted)}");
    }
    return 0;
});
var removeUser = new Command("remove",
    "Delete a device's RabbitMQ user (which closes its connections) and withdraw its grants. Same settings as add.") { deviceId };
removeUser.SetAction(async (parsed, ct) =>
{
    if (OpenDeviceAccounts() is not { } accounts)
    {
        return 2;
    }
    await using (accounts)
    {
        var device = parsed.GetValue(deviceId)!;
        await accounts.RemoveAsync(device, ct);
        Console.WriteLine($"RabbitMQ user '{device}' deleted (its connections are closed) and its grants withdrawn.");
    }
    return 0;
});
var deviceUser = new Command("device-user", "Devices' own RabbitMQ accounts") { addUser, removeUser };

var root = new RootCommand("engram-pipeline: Engram's sync pipeline, simulated and checked") { simulate, status, deviceUser };
try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception e) when (e is not OperationCanceledException)
{
    // A server out of reach, a connection string that does not parse: one line, not a stack trace.
    Console.Error.WriteLine($"engram-pipeline: {ServiceRunner.Describe(e)}");
    return 1;
}

static DeviceAccounts? OpenDeviceAccounts()
{
    var configuration = new ConfigurationBuilder().AddEnvironmentVariables().Build();
    var broker = configuration["RabbitMq:Uri"];
    var management = configuration["RabbitMq:ManagementUri"];
    var cloudDb = configuration.GetConnectionString("CloudDb");
    if (!Uri.TryCreate(broker, UriKind.Absolute, out var brokerUri) || !Uri.TryCreate(management, UriKind.Absolute, out var managementUri)
        || string.IsNullOrWhiteSpace(cloudDb))
    {
        Console.Error.WriteLine("Set RabbitMq__Uri (an administrator's amqp://user:pass@host:port/vhost), " +
                                "RabbitMq__ManagementUri (e.g. http://host:15672/) and ConnectionStrings__CloudDb (the cloud tables' owner).");
        return null;
    }
    return new DeviceAccounts(brokerUri, managementUri, cloudDb);
}
