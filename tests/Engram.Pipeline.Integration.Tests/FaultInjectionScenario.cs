using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Simulation.Verification;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;
using Npgsql;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// I7 under fire, for minutes: a soak. The services run as OS processes on private RabbitMQ and PostgreSQL servers
/// while four devices record at a steady rate (as the Engram application does, from another process), and randomised
/// faults, spread evenly over the run, kill -9 an ingest process or a device process (its publisher, cursor service
/// and puller), restart the broker or the database, or stall an ingest process past the broker's delivery timeout.
/// Every killed part is started again. At the start and at the end it reports each process's resident memory and
/// open handles, the queues' depths and the latency from journal commit to the cloud's answer, so that a leak or a
/// growing backlog shows; at the end I1–I6 are checked from the databases.
/// </summary>
/// <remarks>
/// CI runs 2 minutes at 25 mutations/s per device, with the five faults once each in a seeded order. A long run:
/// <c>ENGRAM_SOAK_MINUTES=30 ENGRAM_FAULT_ROUNDS=10 dotnet test tests/Engram.Pipeline.Integration.Tests --filter "FullyQualifiedName~crash"</c>
/// (<c>ENGRAM_SOAK_RATE</c> sets the rate per device); <c>ENGRAM_FAULT_SEED</c> replays the schedule of a run (the test
/// prints its seed). It needs none of the shared servers but runs in their collection, one scenario at a time: its
/// restarts and stalls race deadlines, and on a 2-core machine beside the other scenarios a database restart took
/// 95 s and a device was still 12,360 seqs behind 3 minutes after the last fault.
/// </remarks>
[Collection(ServersFixture.Collection)]
public sealed class When_processes_crash_and_servers_restart_under_load(ITestOutputHelper output)
{
    private const string Target = "faults";
    private const int Devices = 4;
    private const int IngestProcesses = 2;
    private static readonly TimeSpan _deliveryTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long the start's and the end's latencies are measured over.</summary>
    private static readonly TimeSpan SampleWindow = TimeSpan.FromSeconds(15);

    private enum Fault { KillIngest, KillDevice, RestartBroker, RestartDatabase, StallIngest }

    [Fact]
    public async Task Nothing_is_lost_or_duplicated_and_every_device_converges()
    {
        var rounds = int.Parse(Environment.GetEnvironmentVariable("ENGRAM_FAULT_ROUNDS") ?? "5", CultureInfo.InvariantCulture);
        var duration = TimeSpan.FromMinutes(double.Parse(Environment.GetEnvironmentVariable("ENGRAM_SOAK_MINUTES") ?? "2", CultureInfo.InvariantCulture));
        var rate = int.Parse(Environment.GetEnvironmentVariable("ENGRAM_SOAK_RATE") ?? "25", CultureInfo.InvariantCulture);
        var seed = int.TryParse(Environment.GetEnvironmentVariable("ENGRAM_FAULT_SEED"), CultureInfo.InvariantCulture, out var given)
            ? given
            : Random.Shared.Next();
        output.WriteLine($"seed {seed} (ENGRAM_FAULT_SEED={seed} ENGRAM_FAULT_ROUNDS={rounds} ENGRAM_SOAK_MINUTES={duration.TotalMinutes} replays this schedule); " +
                         $"{Devices} devices at {rate} mutations/s each");
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
        var committed = new ConcurrentDictionary<(string Device, long Seq), DateTimeOffset>();
        var recordingSince = DateTimeOffset.UtcNow;
        var recorders = devices.Select((device, i) => RecordAsync(system.DatabasePath(device), device, seed + i, rate, committed, stopRecording.Token))
            .ToList();

        var counts = Enum.GetValues<Fault>().ToDictionary(f => f, _ => 0);
        var killed = new HashSet<string>();
        int restarts = 0, killsInFlight = 0, killsBehind = 0;
        var healthDuringOutage = new List<string>();
        var clock = Stopwatch.StartNew();
        await WaitUntilAsync(clock, SampleWindow);
        var first = await SampleAsync(system, servers, name);
        for (var round = 0; round < schedule.Count; round++)
        {
            // The faults spread evenly over the run, the first after the start's sample.
            await WaitUntilAsync(clock, duration * (round + 1) / (schedule.Count + 1));
            var fault = schedule[round];
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
                    killed.Add(victim);
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
        }
        await WaitUntilAsync(clock, duration);
        var last = await SampleAsync(system, servers, name);

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
        output.WriteLine($"mutations recorded: {recorded} ({recorded / duration.TotalSeconds / Devices:0.0}/s per device), lost: {lost}, duplicated: {duplicated}, " +
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

        var dbs = devices.Select(d => new DeviceDatabaseRef(d, system.DatabasePath(d), [Target])).ToList();
        var accepted = await SimulationRun.ToAcceptedAsync(dbs, committed, CancellationToken.None);
        var latencies = await Task.WhenAll(new[] { TimeSpan.Zero, duration - SampleWindow }.Select(async from =>
            SimulationRun.Summarise(await SimulationRun.ToAcceptedAsync(dbs, committed.Where(c => c.Value - recordingSince >= from
                && c.Value - recordingSince < from + SampleWindow).ToDictionary(), CancellationToken.None))));
        output.WriteLine($"{"at the start and the end",-40} {"start",10} {"end",10}");
        foreach (var (what, start) in first)
        {
            // A process killed and started again is a new one at the end.
            var again = killed.Any(name => what.StartsWith(name + " ", StringComparison.Ordinal)) ? " (restarted)" : "";
            output.WriteLine($"{what + again,-40} {start,10} {last.GetValueOrDefault(what, "-"),10}");
        }
        output.WriteLine($"{"commit to accepted p50 / p99, ms",-40} {$"{latencies[0].P50:0} / {latencies[0].P99:0}",10} {$"{latencies[1].P50:0} / {latencies[1].P99:0}",10}" +
                         $"   (rows committed in the first and the last {SampleWindow.TotalSeconds:0} s; all {accepted.Count}: p99 {SimulationRun.Summarise(accepted).P99:0} ms)");

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

    /// <summary>
    /// The Engram application's part, from its own connection: uses Engram at <paramref name="rate"/> journal rows a second
    /// until stopped, noting when each row was committed.
    /// </summary>
    private static async Task<int> RecordAsync(string databasePath, string deviceId, int seed, int rate,
        ConcurrentDictionary<(string Device, long Seq), DateTimeOffset> committed, CancellationToken stop)
    {
        using var engram = new EngramWriter(databasePath, new Random(seed));
        var workload = new EngramWorkload(seed, deviceId, [Target], enrollAfter: 0);
        var clock = Stopwatch.StartNew();
        var recorded = 0;
        while (!stop.IsCancellationRequested)
        {
            // Engram's own writes slow as its database grows: when they fall behind the rate, the stop still ends them.
            while (recorded < rate * clock.Elapsed.TotalSeconds && !stop.IsCancellationRequested)
            {
                recorded += SimulationRun.Record(deviceId, workload.Next(engram), committed);
            }
            await Task.Delay(20, CancellationToken.None);
        }
        return recorded;
    }

    /// <summary>The soak's clock reaching <paramref name="at"/>: its schedule is in time, not in conditions.</summary>
    private static async Task WaitUntilAsync(Stopwatch clock, TimeSpan at)
    {
        if (at > clock.Elapsed)
        {
            await Task.Delay(at - clock.Elapsed);
        }
    }

    /// <summary>Each service's resident memory and open handles, and the depth of the pipeline's queues, right now.</summary>
    private static async Task<Dictionary<string, string>> SampleAsync(RunningSystem system, TestServers servers, string virtualHost)
    {
        var sample = new Dictionary<string, string>();
        foreach (var name in system.Names)
        {
            var process = system[name];
            sample[$"{name} resident MiB"] = process.MemoryMb.ToString("0", CultureInfo.InvariantCulture);
            sample[$"{name} open handles"] = process.OpenHandles.ToString(CultureInfo.InvariantCulture);
        }
        using var queues = await servers.GetManagementAsync($"api/queues/{Uri.EscapeDataString(virtualHost)}");
        foreach (var queue in queues.RootElement.EnumerateArray())
        {
            var queueName = queue.GetProperty("name").GetString()!;
            if (queueName.StartsWith("engram-", StringComparison.Ordinal))
            {
                sample[$"{queueName} messages"] = queue.TryGetProperty("messages", out var depth) ? depth.ToString() : "-";
            }
        }
        return sample;
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
                WHERE m.target_key = 'cloud' AND m.disposition = 'pending' AND m.project = $project
                  AND NOT EXISTS (SELECT 1 FROM sync_seq_mapping s WHERE s.target_key = 'cloud:' || $project AND s.local_seq = m.seq)
                """;
            select.Parameters.AddWithValue("$project", Target);
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

        public IEnumerable<string> Names => _services.Keys;

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
