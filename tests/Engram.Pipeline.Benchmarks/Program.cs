using System.Text.Json;
using Engram.Pipeline.Benchmarks;
using Engram.Pipeline.Testing;

// dotnet build -c Release Engram.Pipeline.sln && dotnet run -c Release --no-build --project tests/Engram.Pipeline.Benchmarks -- [--quick | --smoke] [--json PATH]
// (the backlog and catch-up rows run the Release builds of the services as processes)
var sizes = args.Contains("--smoke") ? BenchmarkSizes.Smoke : args.Contains("--quick") ? BenchmarkSizes.Quick : BenchmarkSizes.Full;
var jsonIndex = Array.IndexOf(args, "--json");
var jsonPath = jsonIndex >= 0 && jsonIndex + 1 < args.Length ? args[jsonIndex + 1] : null;

await using var servers = await TestServers.StartAsync();
Console.Error.WriteLine($"Servers: {servers.Source}. {sizes.Label} run, median of {sizes.Runs}.");
var (rows, table) = await BenchmarkRunner.RunAsync(servers, sizes, Console.Error);
Console.WriteLine(table);
if (jsonPath is not null)
{
    await File.WriteAllTextAsync(jsonPath, JsonSerializer.Serialize(rows.Select(r => new
    {
        name = r.Name, mutationsPerSecond = r.MutationsPerSecond, p50Ms = r.P50Ms, p99Ms = r.P99Ms, peakMemoryMb = r.PeakMemoryMb,
        cpuSecondsPer100k = r.CpuSecondsPer100k, note = r.Note,
    }), new JsonSerializerOptions { WriteIndented = true }));
}
return 0;
