using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace Engram.Pipeline.Deployment.Tests;

/// <summary>
/// The repository's own docker-compose.yml, unchanged, brought up for real as an operator would: images built from
/// the repository, three ingest replicas, the provision job and two devices, each on the Engram database in its
/// volume. Memories saved into device-a's database (from outside the container, as the Engram application on that
/// machine does) are found by Engram's own search on device-b; one ingest replica is killed in the middle of a load
/// and nothing is lost. Each phase's time is printed.
/// </summary>
public sealed class When_docker_compose_brings_up_the_deployment(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Target = "team";
    private const int FirstMemories = 200;
    private const int LoadMemories = 3_000;

    private static readonly string Root = RepositoryRoot.Find();
    private readonly string _project = "engramcompose" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("engram-compose-");
    private readonly Stopwatch _total = Stopwatch.StartNew();
    private Dictionary<string, string> _env = [];
    private bool _up;

    [Fact]
    public async Task Memories_written_on_device_a_are_found_on_device_b_and_a_killed_ingest_loses_nothing()
    {
        await PhaseAsync("engine", DockerEngine.EnsureRunningAsync);
        await PhaseAsync("base images", DockerEngine.EnsureBaseImagesAsync);
        await PhaseAsync("up -d --build --scale cloud-ingest=3", async () =>
        {
            _up = true;
            await ComposeAsync(TimeSpan.FromMinutes(15), "up", "-d", "--build", "--scale", "cloud-ingest=3");
        });
        await PhaseAsync("every service healthy", () => Condition.WaitUntilAsync(EveryServiceHealthyAsync, TimeSpan.FromMinutes(3),
            "every service healthy and provision done", ServiceStatesAsync, TimeSpan.FromSeconds(1)));

        var deviceA = await VolumeDatabaseAsync("device-a");
        var deviceB = await VolumeDatabaseAsync("device-b");
        // The devices made their Engram databases on their first start; the user enrolls the project on device-a.
        using var engram = new EngramWriter(deviceA, new Random(1));
        engram.EnrollProject(Target);
        engram.StartSession("ses-compose", Target, "/home/user/compose");
        await PhaseAsync($"{FirstMemories} memories saved on device-a found on device-b", async () =>
        {
            Save(engram, 0, FirstMemories);
            await Condition.WaitUntilAsync(async () => await MemoriesFoundAsync(deviceB) == FirstMemories, TimeSpan.FromMinutes(2),
                $"device-b holds the {FirstMemories} memories of device-a", async () => $"{await MemoriesFoundAsync(deviceB)} found");
        });

        await PhaseAsync("management API: 3 consumers on engram-push", () => Condition.WaitUntilAsync(
            async () => await PushConsumersAsync() == 3, TimeSpan.FromMinutes(1), "3 consumers on engram-push",
            async () => $"{await PushConsumersAsync()} consumers", TimeSpan.FromSeconds(1)));

        var killed = "";
        await PhaseAsync($"{LoadMemories} more memories, an ingest replica killed after the first are answered", async () =>
        {
            var load = Task.Run(async () =>
            {
                for (var written = 0; written < LoadMemories; written += 100)
                {
                    Save(engram, FirstMemories + written, 100);
                    await Task.Delay(50);
                }
            });
            await Condition.WaitUntilAsync(async () => await AnsweredAsync(deviceA) > FirstMemories + 300, TimeSpan.FromMinutes(1),
                "device-a's first load batches answered");
            killed = (await DockerAsync(TimeSpan.FromSeconds(30), "kill", $"{_project}_cloud-ingest_2")).Trim();
            await load;
            var rows = await JournaledAsync(deviceA);
            await Condition.WaitUntilAsync(async () => await MemoriesFoundAsync(deviceB) == FirstMemories + LoadMemories
                    && await AnsweredAsync(deviceA) == rows,
                TimeSpan.FromMinutes(3), $"device-a has all {rows} journal rows answered and device-b finds its {FirstMemories + LoadMemories} memories",
                async () => $"{await MemoriesFoundAsync(deviceB)} found, {await AnsweredAsync(deviceA)} answered on device-a");
        });
        output.WriteLine($"killed {killed} with the load under way");

        // The session and every memory: one journal row each.
        var journaled = await JournaledAsync(deviceA);
        Assert.Equal(1 + FirstMemories + LoadMemories, journaled);
        var cloud = (await ComposeAsync(TimeSpan.FromMinutes(1), "exec", "-T", "postgres", "psql", "-U", _env["POSTGRES_USER"],
            "-d", _env["POSTGRES_DB"], "-tA", "-F", " ", "-c",
            "SELECT COUNT(*), COUNT(DISTINCT local_seq), COALESCE(MAX(cloud_seq), 0), (SELECT head FROM cloud_targets WHERE target_key = 'team') " +
            "FROM cloud_mutations WHERE target_key = 'team'")).Trim();
        output.WriteLine($"cloud log of '{Target}': rows, distinct local seqs, highest seq, head = {cloud}");
        // One cloud row per journaled mutation (none lost, none twice), seqs 1..head.
        Assert.Equal($"{journaled} {journaled} {journaled} {journaled}", cloud);
    }

    /// <summary>Saves memories <paramref name="from"/> on as Engram's <c>mem_save</c> does, one transaction each.</summary>
    private static void Save(EngramWriter engram, int from, int count)
    {
        for (var n = from; n < from + count; n++)
        {
            engram.AddObservation("ses-compose", "discovery", $"Compose memory {n}", $"written on device-a inside its volume, memory number {n}",
                Target);
        }
    }

    /// <summary>The memories of device-a that Engram's search (observations_fts) finds in a database.</summary>
    private static async Task<long> MemoriesFoundAsync(string database) => await ScalarAsync(database, """
        SELECT COUNT(*) FROM observations_fts f JOIN observations o ON o.id = f.rowid
        WHERE observations_fts MATCH '"written on device-a"' AND o.deleted_at IS NULL AND o.session_id = 'ses-compose'
        """);

    /// <summary>Device-a's journal rows of the project.</summary>
    private static Task<long> JournaledAsync(string database) => ScalarAsync(database,
        $"SELECT COUNT(*) FROM sync_mutations WHERE target_key = 'cloud' AND project = '{Target}'");

    /// <summary>Device-a's journal rows the cloud has answered with a seq: mapped and acked.</summary>
    private static Task<long> AnsweredAsync(string database) => ScalarAsync(database, $"""
        SELECT COUNT(*) FROM sync_mutations m JOIN sync_seq_mapping s ON s.target_key = 'cloud:{Target}' AND s.local_seq = m.seq
        WHERE m.acked_at IS NOT NULL
        """);

    private static async Task<long> ScalarAsync(string database, string sql)
    {
        await using var connection = new SqliteConnection($"Data Source={database};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The device database inside a device's named volume, as the host sees it.</summary>
    private async Task<string> VolumeDatabaseAsync(string device) =>
        Path.Combine((await DockerAsync(TimeSpan.FromSeconds(30), "volume", "inspect", "--format", "{{.Mountpoint}}",
            $"{_project}_{device}-data")).Trim(), "engram.db");

    private async Task<bool> EveryServiceHealthyAsync()
    {
        var states = await StatesAsync();
        if (states.FirstOrDefault(s => s.Status == "exited" && s.ExitCode != 0) is { } failed)
        {
            throw new InvalidOperationException($"{failed.Name} exited with {failed.ExitCode}:{Environment.NewLine}" +
                await DockerAsync(TimeSpan.FromSeconds(30), "logs", "--tail", "40", failed.Name));
        }
        return states.Count == 8 && states.All(s => s.Name.Contains("provision", StringComparison.Ordinal)
            ? s.Status == "exited"
            : s is { Status: "running", Health: "healthy" });
    }

    private async Task<string> ServiceStatesAsync() =>
        string.Join(", ", (await StatesAsync()).Select(s => $"{s.Name} {s.Status} {s.Health}".TrimEnd()));

    private sealed record ContainerState(string Name, string Status, string Health, int ExitCode);

    private async Task<List<ContainerState>> StatesAsync()
    {
        var ids = (await ComposeAsync(TimeSpan.FromSeconds(30), "ps", "-q")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (ids.Length == 0)
        {
            return [];
        }
        var lines = await DockerAsync(TimeSpan.FromSeconds(30),
            ["inspect", "--format", "{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}", .. ids]);
        return lines.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.Split('|')).Select(f =>
            new ContainerState(f[0].TrimStart('/'), f[1], f[2], int.Parse(f[3], CultureInfo.InvariantCulture))).ToList();
    }

    private async Task<long> PushConsumersAsync()
    {
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{_env["RABBITMQ_MANAGEMENT_PORT"]}/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_env["RABBITMQ_USER"]}:{_env["RABBITMQ_PASSWORD"]}")));
        using var response = await http.GetAsync("api/queues/%2F/engram-push");
        if (!response.IsSuccessStatusCode)
        {
            return -1;
        }
        using var queue = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return queue.RootElement.TryGetProperty("consumers", out var consumers) ? consumers.GetInt64() : -1;
    }

    private async Task PhaseAsync(string name, Func<Task> work)
    {
        var clock = Stopwatch.StartNew();
        await work();
        output.WriteLine($"{name}: {clock.Elapsed.TotalSeconds:0.0} s");
    }

    private Task<string> ComposeAsync(TimeSpan timeout, params string[] arguments) =>
        RunAsync("docker-compose", ["--project-name", _project, "--env-file", Path.Combine(_work.FullName, ".env"),
            "--file", Path.Combine(Root, "docker-compose.yml"), .. arguments], timeout);

    private static Task<string> DockerAsync(TimeSpan timeout, params string[] arguments) => RunAsync("docker", arguments, timeout);

    private static async Task<string> RunAsync(string program, IReadOnlyList<string> arguments, TimeSpan timeout)
    {
        var run = await ProgramRunner.RunAsync(program, arguments, timeout);
        return run.ExitCode == 0
            ? run.Stdout
            : throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} ended with {run.Describe()}:{Environment.NewLine}{run.Output}");
    }

    /// <summary>The .env an operator makes: .env.example with passwords of its own, and a management port nothing else uses.</summary>
    public async Task InitializeAsync()
    {
        var lines = (await File.ReadAllLinesAsync(Path.Combine(Root, ".env.example")))
            .Select(line => line.EndsWith("=change-me", StringComparison.Ordinal)
                ? line[..^"change-me".Length] + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))
                : line)
            .Select(line => line.StartsWith("RABBITMQ_MANAGEMENT_PORT=", StringComparison.Ordinal) ? $"RABBITMQ_MANAGEMENT_PORT={LocalPorts.Free()}" : line)
            .ToList();
        await File.WriteAllLinesAsync(Path.Combine(_work.FullName, ".env"), lines);
        _env = lines.Where(line => !line.StartsWith('#') && line.Contains('=', StringComparison.Ordinal))
            .Select(line => line.Split('=', 2)).ToDictionary(pair => pair[0], pair => pair[1]);
        Assert.True(_env.ContainsKey("RABBITMQ_MANAGEMENT_PORT"), ".env.example names no RABBITMQ_MANAGEMENT_PORT");
    }

    public async Task DisposeAsync()
    {
        if (_up)
        {
            var clock = Stopwatch.StartNew();
            await ComposeAsync(TimeSpan.FromMinutes(3), "down", "-v", "--remove-orphans");
            output.WriteLine($"down -v: {clock.Elapsed.TotalSeconds:0.0} s");
        }
        output.WriteLine($"in all: {_total.Elapsed.TotalSeconds:0.0} s");
        SqliteConnection.ClearAllPools();
        _work.Delete(recursive: true);
    }
}
