using System.CommandLine;
using System.Text.Json;
using Engram.Pipeline.Cli.Simulation;
using Microsoft.Extensions.Configuration;

var devices = new Option<int>("--devices") { Description = "Devices in the fleet", DefaultValueFactory = _ => 3 };
var mutations = new Option<int>("--mutations") { Description = "Mutations each device records", DefaultValueFactory = _ => 2_000 };
var ingest = new Option<int>("--ingest") { Description = "Competing cloud ingest processes (with RabbitMQ)", DefaultValueFactory = _ => 2 };
var json = new Option<FileInfo?>("--json") { Description = "Also write the verdict and the figures as JSON to this file" };
var simulate = new Command("simulate",
    "Run a fleet of devices end to end and check invariants I1-I6. Uses RabbitMq__Uri and ConnectionStrings__CloudDb " +
    "when both are set; otherwise the embedded default (in-memory transport, SQLite cloud store).")
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
    var options = new SimulationOptions(parsed.GetValue(devices), parsed.GetValue(mutations),
        Target: $"simulate-{DateTimeOffset.UtcNow:yyyyMMddHHmmss}");
    Console.WriteLine(settings.Embedded
        ? $"Embedded default: in-memory transport, SQLite cloud store; {options.Devices} devices x {options.MutationsPerDevice} mutations"
        : $"RabbitMQ + PostgreSQL, {settings.IngestProcesses} ingest processes; {options.Devices} devices x {options.MutationsPerDevice} mutations");

    SimulationReport report;
    await using (var cluster = new PipelineCluster(settings))
    {
        var live = !Console.IsOutputRedirected;
        var progress = new Progress<SimulationProgress>(p =>
        {
            var line = $"{p.Elapsed.TotalSeconds,6:0.0} s  recorded {p.Recorded,8}  answered by the cloud {p.Answered,8}  seqs still to pull {p.Behind,8}";
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
    Console.WriteLine($"journal commit -> visible on another device: p50 {report.ToVisible.P50:0} ms, p99 {report.ToVisible.P99:0} ms ({report.ToVisible.Samples} applications)");
    Console.WriteLine($"databases kept in {work.FullName}");

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

var root = new RootCommand("engram-pipeline: Engram's sync pipeline, simulated and checked") { simulate };
return await root.Parse(args).InvokeAsync();
