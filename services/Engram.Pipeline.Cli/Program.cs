using System.CommandLine;
using Engram.Pipeline.Cli.Simulation;
using Microsoft.Extensions.Configuration;

var devices = new Option<int>("--devices") { Description = "Devices in the fleet", DefaultValueFactory = _ => 2 };
var mutations = new Option<int>("--mutations") { Description = "Mutations each device records", DefaultValueFactory = _ => 2_500 };
var ingest = new Option<int>("--ingest") { Description = "Competing cloud ingest processes", DefaultValueFactory = _ => 2 };
var simulate = new Command("simulate", "Run a fleet of devices end to end and check the invariants") { devices, mutations, ingest };
simulate.SetAction(async (parsed, ct) =>
{
    var configuration = new ConfigurationBuilder().AddEnvironmentVariables().Build();
    var rabbit = configuration["RabbitMq:Uri"];
    var cloudDb = configuration.GetConnectionString("CloudDb");
    if (string.IsNullOrWhiteSpace(rabbit) || string.IsNullOrWhiteSpace(cloudDb))
    {
        Console.Error.WriteLine("simulate needs RabbitMq__Uri and ConnectionStrings__CloudDb " +
                                "(infra/local/simulate.sh starts a private RabbitMQ and PostgreSQL and sets both).");
        return 2;
    }
    var work = Directory.CreateTempSubdirectory("engram-simulate-");
    var settings = new ClusterSettings(new Uri(rabbit), cloudDb, work.FullName) { IngestProcesses = parsed.GetValue(ingest) };
    var options = new SimulationOptions(parsed.GetValue(devices), parsed.GetValue(mutations),
        Target: $"simulate-{DateTimeOffset.UtcNow:yyyyMMddHHmmss}");

    await using var cluster = new PipelineCluster(settings);
    var report = await SimulationRun.RunAsync(cluster, options, new Progress<string>(Console.WriteLine), ct);

    Console.WriteLine();
    foreach (var verdict in report.Verdicts)
    {
        Console.WriteLine($"{(verdict.Pass ? "PASS" : "FAIL"),-5} {verdict.Name,-32} {verdict.Detail}");
    }
    Console.WriteLine();
    Console.WriteLine($"{report.Mutations} mutations from {options.Devices} devices through {settings.IngestProcesses} ingest processes " +
                      $"in {report.Elapsed.TotalSeconds:0.0} s: {report.MutationsPerSecond:0} mutations/s");
    Console.WriteLine($"journal commit -> PushAccepted recorded: p50 {report.P50Ms:0} ms, p99 {report.P99Ms:0} ms");
    Console.WriteLine($"device databases kept in {work.FullName}");
    return report.Pass ? 0 : 1;
});

var root = new RootCommand("engram-pipeline: Engram's sync pipeline, simulated and checked") { simulate };
return await root.Parse(args).InvokeAsync();
