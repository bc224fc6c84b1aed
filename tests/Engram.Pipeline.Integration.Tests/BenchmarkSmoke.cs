using System.Text.Json;
using Engram.Pipeline.Testing;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// A tiny run of every benchmark row, as a user runs the benchmark (its own process, on these tests' servers), so
/// the benchmark cannot rot. It asserts that each row measured something, never how fast.
/// </summary>
[Collection(ServersFixture.Collection)]
public sealed class When_the_benchmark_runs_at_smoke_size(ServersFixture servers, ITestOutputHelper output)
{
    [Fact]
    public async Task Every_row_of_the_table_is_measured()
    {
        var json = Path.Combine(Directory.CreateTempSubdirectory("engram-bench-smoke-").FullName, "rows.json");
        var run = await ProgramRunner.RunBuiltAsync("tests/Engram.Pipeline.Benchmarks", "Engram.Pipeline.Benchmarks", ["--smoke", "--json", json],
            TimeSpan.FromMinutes(5), (await servers.GetAsync()).EnvironmentVariables());
        output.WriteLine(run.Output);
        Assert.True(run.ExitCode == 0, $"The benchmark ended with {run.Describe()}");

        using var rows = JsonDocument.Parse(await File.ReadAllTextAsync(json));
        var names = rows.RootElement.EnumerateArray().Select(row => row.GetProperty("name").GetString()).ToList();
        Assert.Equal(
        [
            "C1 RabbitMQ.Client publish+consume", "C2 Npgsql binary COPY", "C2 Npgsql multi-row INSERT (unnest)",
            "C3 SQLite: Engram's journal write + mapping/cursor", "C4 SQLite raw apply of pulled rows", "C4 lever: 100 rows per transaction",
            "B naive: 1 message, 1 txn, 1 reply per mutation",
            "P Engram.Pipeline, 1 device(s)", "P Engram.Pipeline, 2 device(s)",
            "P lever: 100 per batch, 4 in flight", "P lever: 250 per batch, 4 in flight", "P lever: 500 per batch, 1 in flight",
            "P latency at 200/s offered, 4 devices",
            "L 1 writer + 3 readers at 100/s offered", "L 1 writer + 3 readers, saturation", "L 4 writers at 100/s offered", "L 4 writers, saturation",
            "P backlog drain, 300 journaled", "P backlog drain, 600 journaled",
            "P pull catch-up of a new device, 300 rows", "C2 Npgsql raw read of the log", "P pull catch-up of a new device, 500 rows",
        ], names);
        Assert.All(rows.RootElement.EnumerateArray(), row =>
            Assert.True(row.GetProperty("mutationsPerSecond").GetDouble() > 0, $"{row.GetProperty("name")} measured nothing"));
        Assert.All(rows.RootElement.EnumerateArray().Where(row => row.GetProperty("name").GetString() is { } name
                && (name.StartsWith('B') || name.StartsWith('L') || name.Contains("latency", StringComparison.Ordinal))),
            row => Assert.Equal(JsonValueKind.Number, row.GetProperty("p99Ms").ValueKind));
        Assert.Contains("Targets (ratios within this run):", run.Output, StringComparison.Ordinal);
        foreach (var target in new[]
        {
            "P, 1 device / slowest push-path ceiling", "P, 1 device, CPU per mutation / (C1 + C2 + C3)", "P, 4 devices / P, 1 device",
            "L, 4 writers / min(C4 / 3, P best)", "L, 4 writers, CPU per mutation", "Catch-up / min(C4, raw read)",
            "L commit to searchable elsewhere p99 at 100/s offered", "Memory, backlog of 600 vs 300", "Memory, catch-up of 500 vs 300",
        })
        {
            Assert.Contains(target, run.Output, StringComparison.Ordinal);
        }
    }
}
