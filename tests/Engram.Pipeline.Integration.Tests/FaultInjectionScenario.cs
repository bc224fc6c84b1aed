using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Simulation.Verification;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Npgsql;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// I7 under fire. The services run as OS processes on private RabbitMQ and PostgreSQL servers while
/// every device records continuously (as the Engram application does, from another process), and
/// randomised rounds kill -9 an ingest process or a device process (its publisher, cursor service
/// and puller), restart the broker or the database, or stall an ingest process past the broker's
/// delivery timeout. Every killed part is started again; at the end I1–I6 are checked from the databases.
/// </summary>
/// <remarks>
/// CI runs 5 rounds: the five faults, each once, in a seeded order. A long run:
/// <c>ENGRAM_FAULT_ROUNDS=60 dotnet test tests/Engram.Pipeline.Integration.Tests --filter "FullyQualifiedName~crash"</c>;
/// <c>ENGRAM_FAULT_SEED</c> replays the schedule of a run (the test prints its seed).
/// It needs none of the shared servers but runs in their collection, one scenario at a time: its restarts and stalls
/// race deadlines, and on a 2-core machine beside the other scenarios a restart took longer than up.sh's 2 minutes.
/// </remarks>
[Collection(ServersFixture.Collection)]
public sealed class When_processes_crash_and_servers_restart_under_load(ITestOutputHelper output)
{
    private const string Target = "faults";
    private const int Devices = 3;
    private const int IngestProcesses = 2;
    private static readonly TimeSpan _deliveryTimeout = TimeSpan.FromSeconds(5);

    private enum Fault { KillIngest, KillDevice, RestartBroker, RestartDatabase, StallIngest }

    [Fact]
    public async Task Nothing_is_lost_or_duplicated_and_every_device_converges()
    {
        var rounds = int.Parse(Environment.GetEnvironmentVariable("ENGRAM_FAULT_ROUNDS") ?? "5", CultureInfo.InvariantCulture);
        var seed = int.TryParse(Environment.GetEnvironmentVariable("ENGRAM_FAULT_SEED"), CultureInfo.InvariantCulture, out var given)
            ? given
            : Random.Shared.Next();
        output.WriteLine($"seed {seed} (ENGRAM_FAULT_SEED={seed} ENGRAM_FAULT_ROUNDS={rounds} replays this schedule)");
        var random = new Random(seed);
        var schedule = Enum.GetValues<Fault>().OrderBy(_ => random.Next())
            .Concat(Enumerable.Range(0, rounds).Select(_ => (Fault)random.Next(5))).Take(rounds).ToList();

        await using var servers = await TestServers.StartPrivateAsync(_deliveryTimeout);
        var name = ServersFixture.UniqueName("faults");
        var environment = new Dictionary<string, string>
        {
            ["RabbitMq__Uri"] = (await servers.CreateVirtualHostAsync(name)).ToString(),
            ["ConnectionStrings__CloudDb"] = await servers.CreateDatabaseAsync(name),
            ["Publisher__ResendAfter"] = "00:00:10",
            // The devices share the test's broker account; SecurityScenarios covers per-device accounts.
            ["Ingest__AuthoriseDevices"] = "false",
        };
        var work = Directory.CreateTempSubdirectory("engram-faults-");
        await using var system = new RunningSystem(environment, work.FullName);
        for (var i = 0; i < IngestProcesses; i++)
        {
            await system.StartAsync($"ingest-{i + 1}", "Engram.Pipeline.CloudIngest");
        }
        var devices = Enumerable.Range(1, Devices).Select(i => $"device-{i}").ToList();
        foreach (var device in devices)
        {
            // The device process attaches to an empty file and makes it an Engram database; Engram writes it from here.
            await system.StartAsync(device, "Engram.Pipeline.Device", new()
            {
                ["ConnectionStrings__DeviceDb"] = $"Data Source={system.DatabasePath(device)}",
                ["Device__Id"] = device,
            });
        }

        using var stopRecording = new CancellationTokenSource();
        var recorders = devices.Select((device, i) => RecordAsync(system.DatabasePath(device), device, seed + i, stopRecording.Token)).ToList();

        var counts = Enum.GetValues<Fault>().ToDictionary(f => f, _ => 0);
        int restarts = 0, killsInFlight = 0, killsBehind = 0;
        var healthDuringOutage = new List<string>();
        var clock = Stopwatch.StartNew();
        foreach (var fault in schedule)
        {
            counts[fault]++;
            switch (fault)
            {
                case Fault.KillIngest or Fault.KillDevice:
                    var victim = fault == Fault.KillIngest ? $"ingest-{random.Next(IngestProcesses) + 1}" : devices[random.Next(Devices)];
                    if (fault == Fault.KillDevice)
                    {
                        // Aim at the publisher and cursor service (batches in flight) or at the puller (behind the head), within 3 s.
                        var aimAtPuller = random.Next(2) == 0;
                        var (inFlight, behind) = await DevicePhaseAsync(system.DatabasePath(victim), aimAtPuller);
                        killsInFlight += inFlight ? 1 : 0;
                        killsBehind += behind ? 1 : 0;
                    }
                    await system[victim].KillAsync();
                    await Task.Delay(TimeSpan.FromMilliseconds(random.Next(2000)));
                    await system.RestartAsync(victim);
                    restarts++;
                    break;
                case Fault.RestartBroker or Fault.RestartDatabase:
                    var server = fault == Fault.RestartBroker ? "rabbitmq" : "postgres";
                    using (var watching = new CancellationTokenSource())
                    {
                        var watcher = WatchHealthAsync(system[devices[0]].Url, healthDuringOutage, watching.Token);
                        await servers.RestartAsync(server);
                        await watching.CancelAsync();
                        await watcher;
                    }
                    restarts++;
                    break;
                case Fault.StallIngest:
                    await system[$"ingest-{random.Next(IngestProcesses) + 1}"].StallAsync(_deliveryTimeout + TimeSpan.FromSeconds(3));
                    break;
            }
            output.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  {fault}");
            await Task.Delay(TimeSpan.FromMilliseconds(1000 + random.Next(2000)));
        }

        await stopRecording.CancelAsync();
        var recorded = (await Task.WhenAll(recorders)).Sum();
        await using var cloud = NpgsqlDataSource.Create(environment["ConnectionStrings__CloudDb"]);
        var store = new PostgresCloudStore(cloud);
        // Per device: journal rows unanswered, deferred rows it could replay, and how far its cursor is behind the head.
        async Task<List<(string Device, long Pending, long Replayable, long Behind)>> LagAsync()
        {
            var head = await store.HeadAsync(Target, CancellationToken.None);
            var lag = new List<(string, long, long, long)>();
            foreach (var device in devices)
            {
                await using var connection = new SqliteConnection($"Data Source={system.DatabasePath(device)};Mode=ReadOnly;Pooling=False");
                await connection.OpenAsync();
                var target = new SyncTarget(Target);
                var counts = SyncCounts.Read(connection, target);
                lag.Add((device, counts.Pending, SyncCounts.Replayable(connection, target), head - counts.Cursor));
            }
            return lag;
        }
        await Condition.WaitUntilAsync(async () => (await LagAsync()).All(l => l.Pending + l.Replayable + l.Behind == 0),
            TimeSpan.FromMinutes(3), "every device answered and at the head",
            async () => string.Join(", ", (await LagAsync()).Select(l => $"{l.Device}: {l.Pending} unanswered, {l.Replayable} to replay, {l.Behind} behind"))
                        + "\n" + system.Describe());

        var verdicts = await InvariantChecker.CheckAllAsync(store,
            devices.Select(d => new DeviceDatabaseRef(d, system.DatabasePath(d), [Target])).ToList(), CancellationToken.None);
        var (lost, duplicated) = await LossAndDuplicationAsync(cloud, devices.Select(system.DatabasePath));
        output.WriteLine($"{rounds} rounds in {clock.Elapsed.TotalSeconds:0} s: " + string.Join(", ", counts.Select(c => $"{c.Key} {c.Value}")));
        output.WriteLine($"device kills with batches in flight: {killsInFlight}, while behind the head: {killsBehind}; restarts: {restarts}");
        output.WriteLine($"mutations recorded: {recorded}, lost: {lost}, duplicated: {duplicated}, " +
                         $"devices converged: {(verdicts[^1].Pass ? Devices : 0)} of {Devices}");
        var notReady = healthDuringOutage.Where(h => !h.StartsWith("200 {\"status\":\"Healthy\"", StringComparison.Ordinal)).ToList();
        output.WriteLine($"device readiness polled while servers restarted: {healthDuringOutage.Count} answers, {notReady.Count} not healthy, e.g.:");
        foreach (var answer in notReady.DistinctBy(a => a[..Math.Min(a.Length, 60)]).Take(3))
        {
            output.WriteLine($"  {answer}");
        }
        foreach (var verdict in verdicts)
        {
            output.WriteLine($"{(verdict.Pass ? "PASS" : "FAIL")} {verdict.Name}: {verdict.Detail}");
        }

        Assert.True(recorded > 0, "nothing was recorded");
        Assert.Equal(0, lost);
        Assert.Equal(0, duplicated);
        Assert.All(verdicts, v => Assert.True(v.Pass, $"seed {seed}: {v.Name}: {v.Detail}"));
        if (counts[Fault.RestartBroker] + counts[Fault.RestartDatabase] > 0)
        {
            // While a server is away, the device's readiness says so (it comes back by itself: the run converged).
            Assert.NotEmpty(notReady);
        }
        work.Delete(recursive: true);
    }

    /// <summary>The Engram application's part, from its own connection: uses Engram (journaling a few rows) every 50 ms until stopped.</summary>
    private static async Task<int> RecordAsync(string databasePath, string deviceId, int seed, CancellationToken stop)
    {
        using var engram = new EngramWriter(databasePath, new Random(seed));
        var workload = new EngramWorkload(seed, deviceId, [Target], enrollAfter: 0);
        var recorded = 0;
        while (!stop.IsCancellationRequested)
        {
            recorded += workload.Journal(engram, 10).Count;
            await Task.Delay(50, CancellationToken.None);
        }
        return recorded;
    }

    /// <summary>
    /// Waits up to 3 s for the device to have batches sent and unanswered (or, aiming at the puller, a
    /// cursor behind the head it knows), and returns what it was doing when the wait ended.
    /// </summary>
    private static async Task<(bool InFlight, bool Behind)> DevicePhaseAsync(string databasePath, bool aimAtPuller)
    {
        await using var connection = new SqliteConnection($"Data Source={databasePath};Mode=ReadOnly");
        await connection.OpenAsync();
        await using var select = connection.CreateCommand();
        select.CommandText = """
            SELECT EXISTS (SELECT 1 FROM sync_mutations m JOIN pipeline_targets t ON t.target_key = $target
                           WHERE m.target_key = 'cloud' AND m.seq <= t.sent_through AND m.acked_at IS NULL AND m.disposition = 'pending'),
                   COALESCE((SELECT t.cloud_head > s.unified_cursor FROM pipeline_targets t JOIN sync_state s ON s.target_key = t.target_key
                             WHERE t.target_key = $target), 0)
            """;
        select.Parameters.AddWithValue("$target", new SyncTarget(Target).Key);
        bool inFlight = false, behind = false;
        await Condition.PollUntilAsync(async () =>
        {
            await using var reader = await select.ExecuteReaderAsync();
            await reader.ReadAsync();
            (inFlight, behind) = (reader.GetBoolean(0), reader.GetBoolean(1));
            return aimAtPuller ? behind : inFlight;
        }, TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(5));
        return (inFlight, behind);
    }

    /// <summary>
    /// Lost: journal rows Engram did not withdraw with neither a mapping nor a rejection. Duplicated: cloud rows beyond one
    /// per (device, local seq).
    /// </summary>
    private static async Task<(long Lost, long Duplicated)> LossAndDuplicationAsync(NpgsqlDataSource cloud, IEnumerable<string> databasePaths)
    {
        long lost = 0;
        foreach (var path in databasePaths)
        {
            await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly");
            await connection.OpenAsync();
            await using var select = connection.CreateCommand();
            select.CommandText = """
                SELECT COUNT(*) FROM sync_mutations m
                WHERE m.target_key = 'cloud' AND m.disposition = 'pending'
                  AND NOT EXISTS (SELECT 1 FROM sync_seq_mapping s WHERE s.local_seq = m.seq)
                """;
            lost += (long)(await select.ExecuteScalarAsync())!;
        }
        await using var duplicates = cloud.CreateCommand(
            "SELECT COUNT(*) - COUNT(DISTINCT (device_id, local_seq)) FROM cloud_mutations WHERE target_key = $1");
        duplicates.Parameters.AddWithValue(Target);
        return (lost, (long)(await duplicates.ExecuteScalarAsync())!);
    }

    /// <summary>Polls a service's readiness while a server restarts, noting each answer (status and first words).</summary>
    private static async Task WatchHealthAsync(Uri service, List<string> seen, CancellationToken stop)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        while (!stop.IsCancellationRequested)
        {
            string answer;
            try
            {
                using var response = await http.GetAsync(new Uri(service, "health/ready"), stop);
                var body = await response.Content.ReadAsStringAsync(stop);
                answer = $"{(int)response.StatusCode} {body[..Math.Min(body.Length, 300)]}";
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                answer = $"no answer: {e.Message}";
            }
            lock (seen)
            {
                seen.Add(answer);
            }
            try
            {
                await Task.Delay(250, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>The services of one run, each an OS process that can be killed and started again with the same configuration.</summary>
    private sealed class RunningSystem(IReadOnlyDictionary<string, string> shared, string workDirectory) : IAsyncDisposable
    {
        private readonly Dictionary<string, (string Project, Dictionary<string, string> Environment, ServiceProcess Process)> _services = [];

        public ServiceProcess this[string name] => _services[name].Process;

        public string DatabasePath(string device) => Path.Combine(workDirectory, $"{device}.db");

        public async Task StartAsync(string name, string project, Dictionary<string, string>? own = null)
        {
            var environment = new Dictionary<string, string>(shared);
            foreach (var (key, value) in own ?? [])
            {
                environment[key] = value;
            }
            _services[name] = (project, environment, await ServiceProcess.StartAsync(project, environment, TimeSpan.FromMinutes(2)));
        }

        public async Task RestartAsync(string name)
        {
            var (project, environment, old) = _services[name];
            await old.DisposeAsync();
            _services[name] = (project, environment, await ServiceProcess.StartAsync(project, environment, TimeSpan.FromMinutes(2)));
        }

        public string Describe() => string.Join(Environment.NewLine, _services.Select(s => $"--- {s.Key}:{Environment.NewLine}{s.Value.Process.Output}"));

        public async ValueTask DisposeAsync()
        {
            foreach (var (_, _, process) in _services.Values)
            {
                await process.DisposeAsync();
            }
        }
    }
}
