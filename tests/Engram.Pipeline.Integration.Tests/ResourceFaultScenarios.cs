using System.Diagnostics;
using System.Text.Json;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Npgsql;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>Private RabbitMQ and PostgreSQL servers, whose alarms and settings a test may change: never shared.</summary>
public sealed class PrivateServersFixture : IAsyncLifetime
{
    public TestServers Servers { get; private set; } = null!;

    public async Task InitializeAsync() => Servers = await TestServers.StartPrivateAsync();

    public async Task DisposeAsync() => await Servers.DisposeAsync();
}

/// <summary>
/// The servers run short: the broker's memory and disk alarms block every publisher, and the cloud database refuses
/// writes or holds a statement on a lock past its timeout. Nothing may be lost or dead-lettered, and everything flows
/// once the fault clears. The servers are this class's own: an alarm or a read-only database would stall every
/// scenario on shared ones.
/// </summary>
public sealed class When_the_servers_run_short_of_resources(PrivateServersFixture fixture, ITestOutputHelper output)
    : IClassFixture<PrivateServersFixture>
{
    private const string Project = "team";
    private const int MutationsPerPhase = 300;
    private static readonly TimeSpan _deadline = TimeSpan.FromMinutes(1);

    private TestServers Servers => fixture.Servers;

    [Fact]
    public async Task The_brokers_memory_and_disk_alarms_hold_the_devices_and_everything_flows_once_they_clear()
    {
        await using var world = await PipelineWorld.CreateAsync(Servers, "alarms", ingestProcesses: 1);
        var devices = await StartAsync(world);
        var journaled = Journal(devices, seed: 1);
        await world.Cluster.WaitUntilSettledAsync(_deadline, CancellationToken.None);

        (string Alarm, string Field, string[] Raise, string[] Clear)[] alarms =
        [
            ("memory", "mem_alarm", ["set_vm_memory_high_watermark", "0"], ["set_vm_memory_high_watermark", "0.4"]),
            ("disk", "disk_free_alarm", ["set_disk_free_limit", "10000GB"], ["set_disk_free_limit", "50MB"]),
        ];
        foreach (var (alarm, field, raise, clear) in alarms)
        {
            await Servers.RabbitMqCtlAsync(raise);
            await Condition.WaitUntilAsync(() => NodeFlagAsync(field), _deadline, $"the broker's {alarm} alarm");
            journaled += Journal(devices, seed: journaled);
            await Condition.WaitUntilAsync(async () => (await ConnectionStatesAsync(world)).Contains("blocked"), _deadline,
                $"a publisher blocked by the {alarm} alarm");
            var (pending, _, _) = await world.Cluster.LagAsync(includeCursors: false, CancellationToken.None);
            Assert.True(pending > 0, $"the devices had nothing waiting under the {alarm} alarm");

            var cleared = Stopwatch.StartNew();
            await Servers.RabbitMqCtlAsync(clear);
            await world.Cluster.WaitUntilSettledAsync(_deadline, CancellationToken.None);
            output.WriteLine($"{alarm} alarm: {pending} journal rows waited; all accepted and pulled everywhere {cleared.Elapsed.TotalSeconds:0.0} s after it cleared.");
        }

        await AssertNothingLostOrDeadLetteredAsync(world, journaled);
    }

    [Fact]
    public async Task The_database_refusing_writes_or_holding_a_lock_is_waited_out_and_no_batch_is_dead_lettered()
    {
        await using var world = await PipelineWorld.CreateAsync(Servers, "database", ingestProcesses: 1, cloudDbOptions: "Command Timeout=2");
        var devices = await StartAsync(world);
        var journaled = Journal(devices, seed: 1);
        await world.Cluster.WaitUntilSettledAsync(_deadline, CancellationToken.None);
        var head = await world.Cluster.Cloud.HeadAsync(Project, CancellationToken.None);

        // A full disk or a standby: PostgreSQL refuses every write.
        await using (var admin = await OpenAdminAsync(world))
        {
            await ExecuteAsync(admin, "ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()");
        }
        var refusedFrom = await RollbacksAsync(world);
        journaled += Journal(devices, seed: journaled);
        await Condition.WaitUntilAsync(async () => await RollbacksAsync(world) >= refusedFrom + 3, _deadline,
            "three writes of the ingest refused by the read-only database");
        Assert.Equal(head, await world.Cluster.Cloud.HeadAsync(Project, CancellationToken.None));
        var writable = Stopwatch.StartNew();
        await using (var admin = await OpenAdminAsync(world))
        {
            await ExecuteAsync(admin, "ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()");
        }
        await world.Cluster.WaitUntilSettledAsync(_deadline, CancellationToken.None);
        output.WriteLine($"read-only database: all accepted and pulled everywhere {writable.Elapsed.TotalSeconds:0.0} s after it took writes again.");

        // Another session holds the log's head row past the ingest's 2 s command timeout: its statements time out, are
        // rolled back and tried again.
        var timedOutFrom = await RollbacksAsync(world);
        var released = new Stopwatch();
        await using (var holder = await OpenAdminAsync(world))
        {
            await using var hold = await holder.BeginTransactionAsync();
            await ExecuteAsync(holder, "LOCK TABLE cloud_targets IN EXCLUSIVE MODE");
            journaled += Journal(devices, seed: journaled);
            await Condition.WaitUntilAsync(async () => await RollbacksAsync(world) >= timedOutFrom + 2, _deadline,
                "two statements of the ingest timed out on the lock");
            await hold.RollbackAsync();
            released.Start();
        }
        await world.Cluster.WaitUntilSettledAsync(_deadline, CancellationToken.None);
        output.WriteLine($"lock held past the command timeout: all accepted and pulled everywhere {released.Elapsed.TotalSeconds:0.0} s after its release.");

        await AssertNothingLostOrDeadLetteredAsync(world, journaled);
    }

    private static async Task<IReadOnlyList<DeviceNode>> StartAsync(PipelineWorld world)
    {
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        return [await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None, seed: 1),
            await world.Cluster.StartDeviceAsync("device-b", CancellationToken.None, seed: 2)];
    }

    /// <summary>Engram records a phase's mutations on each device; returns how many journal rows it wrote.</summary>
    private static int Journal(IReadOnlyList<DeviceNode> devices, int seed) =>
        devices.Select((device, i) => new EngramWorkload(seed + i, device.DeviceId, [Project], enrollAfter: 0)
            .Journal(device.Engram, MutationsPerPhase).Count).Sum();

    private async Task AssertNothingLostOrDeadLetteredAsync(PipelineWorld world, int journaled)
    {
        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(journaled);
        using var queues = await Servers.GetManagementAsync($"api/queues/{Uri.EscapeDataString(world.VirtualHost)}");
        Assert.Empty(queues.RootElement.EnumerateArray()
            .Where(q => q.GetProperty("name").GetString()!.EndsWith("_error", StringComparison.Ordinal) && q.GetProperty("messages").GetInt64() > 0)
            .Select(q => q.GetProperty("name").GetString()));
    }

    private async Task<bool> NodeFlagAsync(string field)
    {
        using var nodes = await Servers.GetManagementAsync("api/nodes");
        return nodes.RootElement.EnumerateArray().Any(node => node.TryGetProperty(field, out var flag) && flag.ValueKind == JsonValueKind.True);
    }

    private async Task<IReadOnlyList<string>> ConnectionStatesAsync(PipelineWorld world)
    {
        using var connections = await Servers.GetManagementAsync($"api/vhosts/{Uri.EscapeDataString(world.VirtualHost)}/connections");
        return connections.RootElement.EnumerateArray()
            .Select(c => c.TryGetProperty("state", out var state) ? state.GetString() ?? "" : "").ToList();
    }

    private static async Task<long> RollbacksAsync(PipelineWorld world)
    {
        await using var admin = await OpenAdminAsync(world);
        await using var read = new NpgsqlCommand("SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()", admin);
        return (long)(await read.ExecuteScalarAsync())!;
    }

    /// <summary>The administrator, on the world's cloud database, without the ingest's command timeout.</summary>
    private static async Task<NpgsqlConnection> OpenAdminAsync(PipelineWorld world)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(world.Cluster.Settings.CloudDb) { CommandTimeout = 30, Pooling = false }
            .ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, params string[] statements)
    {
        foreach (var statement in statements)
        {
            await using var command = new NpgsqlCommand(statement, connection);
            await command.ExecuteNonQueryAsync();
        }
    }
}
