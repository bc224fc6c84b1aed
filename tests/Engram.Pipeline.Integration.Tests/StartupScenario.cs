using Engram.Pipeline.Testing;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// The programs as an operator starts them, with a setting missing: one line naming it and exit code 1, never a
/// stack trace. Needs no server, so it runs beside the scenarios that share them.
/// </summary>
public sealed class When_a_service_starts_without_its_database_setting(ITestOutputHelper output)
{
    [Theory]
    [InlineData("services/Engram.Pipeline.Device", "Engram.Pipeline.Device", "ConnectionStrings__DeviceDb")]
    [InlineData("services/Engram.Pipeline.CloudIngest", "Engram.Pipeline.CloudIngest", "ConnectionStrings__CloudDb")]
    public async Task It_exits_with_code_1_and_one_line_that_names_the_setting(string project, string program, string setting)
    {
        var run = await ProgramRunner.RunBuiltAsync(project, program, [], TimeSpan.FromMinutes(1), new Dictionary<string, string>
        {
            ["RabbitMq__Uri"] = "amqp://user:pass@127.0.0.1:5672/",
            [setting] = "",
        });
        output.WriteLine(run.Output);

        Assert.Equal(1, run.ExitCode);
        var lines = (run.Stdout + run.Stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var failure = Assert.Single(lines, line => line.Contains("Start-up failed", StringComparison.Ordinal));
        Assert.Contains(setting, failure, StringComparison.Ordinal);
        Assert.DoesNotContain(lines, line => line.StartsWith("at ", StringComparison.Ordinal) || line.Contains("Unhandled exception", StringComparison.Ordinal));
    }
}

/// <summary>The CLI's main job pointed at servers that are not there: one line saying which, exit code 1.</summary>
public sealed class When_simulate_cannot_reach_its_database(ITestOutputHelper output)
{
    [Fact]
    public async Task It_exits_with_code_1_and_one_line_that_says_why()
    {
        var closed = LocalPorts.Free();
        var run = await ProgramRunner.RunBuiltAsync("services/Engram.Pipeline.Cli", "engram-pipeline", ["simulate", "--mutations", "10"],
            TimeSpan.FromMinutes(2), new Dictionary<string, string>
            {
                ["RabbitMq__Uri"] = $"amqp://user:pass@127.0.0.1:{closed}/",
                ["ConnectionStrings__CloudDb"] = $"Host=127.0.0.1;Port={closed};Username=engram;Password=engram;Database=engram",
            });
        output.WriteLine(run.Output);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"engram-pipeline: Cannot prepare the cloud database (127.0.0.1:{closed}/engram)", run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Stdout + run.Stderr, StringComparison.Ordinal);
    }
}
