using Engram.Pipeline.Benchmarks;
using Engram.Pipeline.Testing;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>A tiny run of every benchmark row, so the benchmark cannot rot. It asserts that each row measured something, never how fast.</summary>
[Collection(ServersFixture.Collection)]
public sealed class When_the_benchmark_runs_at_smoke_size(ServersFixture servers, ITestOutputHelper output)
{
    [Fact]
    public async Task Every_row_of_the_table_is_measured()
    {
        var (rows, table) = await BenchmarkRunner.RunAsync(servers.Servers, BenchmarkSizes.Smoke, TextWriter.Null);
        output.WriteLine(table);

        Assert.Equal(
        [
            "C1 RabbitMQ.Client publish+consume", "C2 Npgsql binary COPY", "C2 Npgsql multi-row INSERT (unnest)",
            "C3 SQLite journal + mapping/cursor", "B naive: 1 message, 1 txn, 1 reply per mutation",
            "P Engram.Pipeline, 1 device(s)", "P Engram.Pipeline, 2 device(s)",
            "P lever: 100 per batch, 4 in flight", "P lever: 250 per batch, 4 in flight", "P lever: 500 per batch, 1 in flight",
            "P latency at 200/s offered", "P backlog drain, 300 journaled", "P backlog drain, 600 journaled",
            "C2 Npgsql raw read of the log", "P pull catch-up of a new device",
        ], rows.Select(r => r.Name));
        Assert.All(rows, row => Assert.True(row.MutationsPerSecond > 0, $"{row.Name} measured nothing"));
        Assert.All(rows.Where(r => r.Name.StartsWith("B", StringComparison.Ordinal) || r.Name.Contains("latency", StringComparison.Ordinal)),
            row => Assert.NotNull(row.P99Ms));
        Assert.Contains("P (best) / B", table, StringComparison.Ordinal);
        Assert.Contains("Pull catch-up / raw read", table, StringComparison.Ordinal);
    }
}
