using System.Diagnostics;
using System.Globalization;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.Simulation;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using MassTransit;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// Engram's application on device-b holds its database's write lock (<c>BEGIN IMMEDIATE</c>, as it does for each
/// write) far past the device's busy timeout (1 s here, by the standard <c>Default Timeout</c> keyword), while
/// device-a's changes arrive and device-b's own rows are answered. Needs no server.
/// </summary>
public sealed class When_Engram_holds_the_database_past_the_devices_busy_timeout(ITestOutputHelper output)
{
    [Fact]
    public async Task The_device_waits_reports_the_lock_loses_nothing_and_nothing_lands_in_its_error_queue()
    {
        await using var world = await PipelineWorld.CreateAsync(servers: null, "engram_holds_the_lock", ingestProcesses: 1,
            deviceSettings: new Dictionary<string, string?> { ["ConnectionStrings:DeviceDb"] = "Default Timeout=1" });
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var a = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);
        var b = await world.Cluster.StartDeviceAsync("device-b", CancellationToken.None, seed: 2);
        var errors = await DeviceErrorQueues.WatchAsync(world.Cluster);
        var workloadA = new EngramWorkload(51, "device-a", ["team"], enrollAfter: 0);
        var workloadB = new EngramWorkload(52, "device-b", ["team"], enrollAfter: 0);
        var journaled = workloadA.Journal(a.Engram, 200).Count + workloadB.Journal(b.Engram, 50).Count;
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromSeconds(30), CancellationToken.None);

        // device-b's rows are committed and at once Engram takes the lock: their answers come while it holds it.
        journaled += workloadB.Journal(b.Engram, 50).Count;
        var engram = HoldWriteLock(b.DatabasePath);
        try
        {
            journaled += workloadA.Journal(a.Engram, 300).Count;
            // Held until an answer has waited through five retries: far past the busy timeout, and past the point
            // where a bounded retry gives an answer up to the error queue.
            await DeviceHealth.WaitUntilDegradedAsync(b, "database is locked", () => b.Runtime.AnswerRetries.Failing is { Attempts: >= 5 });
        }
        finally
        {
            engram.Dispose();
        }
        var released = Stopwatch.StartNew();

        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromSeconds(60), CancellationToken.None);
        var settled = released.Elapsed;
        await DeviceHealth.WaitUntilHealthyAsync(b);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Released the lock; settled {settled.TotalSeconds:0.0} s later, healthy after {released.Elapsed.TotalSeconds:0.0} s."));

        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(journaled);
        Assert.Empty(errors.Received);
    }

    /// <summary>A connection of the Engram application in the middle of a write: it holds the write lock until disposed.</summary>
    private static SqliteConnection HoldWriteLock(string databasePath)
    {
        var connection = new SqliteConnection($"Data Source={databasePath};Pooling=False");
        connection.Open();
        using var begin = connection.CreateCommand();
        begin.CommandText = "PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE";
        begin.ExecuteNonQuery();
        return connection;
    }
}

/// <summary>
/// Device-b's Engram database on a file system of its own that device-a's large observations fill (a tmpfs of a
/// fixed size, mounted by the test: it needs root, which CI has), then grown. Needs no server.
/// </summary>
public sealed class When_the_devices_disk_is_full(ITestOutputHelper output)
{
    private const int ObservationBytes = 40_000;

    [Fact]
    public async Task The_device_retries_reports_the_full_disk_and_loses_nothing_once_there_is_room()
    {
        // Unmounted after the world (and its devices) is gone.
        await using var disk = await SmallFileSystem.MountAsync(sizeKiB: 1536);
        await using var world = await PipelineWorld.CreateAsync(servers: null, "disk_full", ingestProcesses: 1);
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var a = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None);
        var b = await world.Cluster.StartDeviceAsync("device-b", CancellationToken.None, seed: 2, databaseDirectory: disk.Directory);
        var errors = await DeviceErrorQueues.WatchAsync(world.Cluster);
        b.Engram.EnrollProject("team");
        var journaled = a.Engram.EnrollProject("team").Count + a.Engram.StartSession("session-a", "team", "/home/a/team").Count;

        // About 2 MB of observations (and their search index) for a file system of 1.5 MB.
        for (var i = 0; i < 50; i++)
        {
            journaled += a.Engram.AddObservation("session-a", "discovery", $"finding {i}", LargeContent(i), "team").Seqs.Count;
        }
        // Until the puller has tried again, and still reports it.
        await DeviceHealth.WaitUntilDegradedAsync(b, "database or disk is full", () => b.Runtime.Puller.Backoff.Failing is { Attempts: >= 2 });

        await disk.GrowAsync(sizeKiB: 64 * 1024);
        var grown = Stopwatch.StartNew();
        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromSeconds(60), CancellationToken.None);
        var settled = grown.Elapsed;
        await DeviceHealth.WaitUntilHealthyAsync(b);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Grew the file system; settled {settled.TotalSeconds:0.0} s later, healthy after {grown.Elapsed.TotalSeconds:0.0} s."));

        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(journaled);
        Assert.Equal(50, await ObservationsAsync(b));
        Assert.Empty(errors.Received);
    }

    /// <summary>Distinct words, so that the search index grows with the content.</summary>
    private static string LargeContent(int observation) =>
        string.Join(' ', Enumerable.Range(0, ObservationBytes / 8).Select(word => (observation * 100_003 + word).ToString("x7", CultureInfo.InvariantCulture)));

    private static async Task<long> ObservationsAsync(DeviceNode device)
    {
        await using var connection = new SqliteConnection($"Data Source={device.DatabasePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        await using var count = connection.CreateCommand();
        count.CommandText = "SELECT COUNT(*) FROM observations WHERE project = 'team' AND deleted_at IS NULL";
        return (long)(await count.ExecuteScalarAsync())!;
    }
}

/// <summary>A device's /health, as <see cref="DeviceHealthCheck"/> answers it.</summary>
internal static class DeviceHealth
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(45);

    public static Task<HealthCheckResult> CheckAsync(DeviceNode device) =>
        new DeviceHealthCheck(device.Runtime, new HealthOptions()).CheckHealthAsync(new HealthCheckContext());

    /// <summary>Waits until the device reports Degraded with <paramref name="reason"/> (and <paramref name="also"/> holds).</summary>
    public static Task WaitUntilDegradedAsync(DeviceNode device, string reason, Func<bool>? also = null) =>
        Condition.WaitUntilAsync(async () => (also?.Invoke() ?? true) && await CheckAsync(device) is { Status: HealthStatus.Degraded } health
                && health.Description!.Contains(reason, StringComparison.Ordinal),
            Deadline, $"{device.DeviceId} reports Degraded: {reason}", () => DescribeAsync(device));

    public static Task WaitUntilHealthyAsync(DeviceNode device) =>
        Condition.WaitUntilAsync(async () => (await CheckAsync(device)).Status == HealthStatus.Healthy, Deadline,
            $"{device.DeviceId} reports Healthy again", () => DescribeAsync(device));

    private static async Task<string> DescribeAsync(DeviceNode device)
    {
        var health = await CheckAsync(device);
        return $"{health.Status}: {health.Description}";
    }
}

/// <summary>A tmpfs of a fixed size, mounted for one test and unmounted after it.</summary>
internal sealed class SmallFileSystem : IAsyncDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(30);

    private readonly DirectoryInfo _mountPoint;

    private SmallFileSystem(DirectoryInfo mountPoint) => _mountPoint = mountPoint;

    public string Directory => _mountPoint.FullName;

    /// <summary>Mounts it on a new temp directory; fails, saying why, when it cannot (not root, no tmpfs).</summary>
    public static async Task<SmallFileSystem> MountAsync(int sizeKiB)
    {
        var mountPoint = System.IO.Directory.CreateTempSubdirectory("engram-small-disk-");
        try
        {
            await RunAsync($"Cannot mount a {sizeKiB} KiB tmpfs on {mountPoint.FullName} (the test needs root)",
                "mount", "-t", "tmpfs", "-o", $"size={sizeKiB}k", "tmpfs", mountPoint.FullName);
        }
        catch
        {
            mountPoint.Delete();
            throw;
        }
        return new SmallFileSystem(mountPoint);
    }

    public Task GrowAsync(int sizeKiB) =>
        RunAsync($"Cannot grow the tmpfs on {Directory} to {sizeKiB} KiB", "mount", "-o", $"remount,size={sizeKiB}k", Directory);

    public async ValueTask DisposeAsync()
    {
        // The devices' connections are closed by then; a lazy unmount if something still holds a file open.
        SqliteConnection.ClearAllPools();
        var unmount = await ProgramRunner.RunAsync("umount", [Directory], CommandTimeout);
        if (unmount.ExitCode != 0)
        {
            await RunAsync($"Cannot unmount the tmpfs on {Directory}", "umount", "-l", Directory);
        }
        _mountPoint.Delete(recursive: true);
    }

    private static async Task RunAsync(string failure, string program, params string[] arguments)
    {
        var result = await ProgramRunner.RunAsync(program, arguments, CommandTimeout);
        Assert.True(result.ExitCode == 0, $"{failure}: {program} {result.Describe()}: {result.Stderr.Trim()}");
    }
}

/// <summary>
/// The <c>_error</c> queues of the devices on the embedded bus, read as they fill: an answer or a TargetAdvanced the
/// device gave up on lands there.
/// </summary>
internal sealed class DeviceErrorQueues
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _received = new();

    /// <summary>What landed in a device's error queue: the queue and the message type.</summary>
    public IReadOnlyCollection<string> Received => _received;

    public static async Task<DeviceErrorQueues> WatchAsync(PipelineCluster cluster)
    {
        var watch = new DeviceErrorQueues();
        var bus = cluster.Ingest[0].Services.GetRequiredService<IBus>();
        foreach (var device in cluster.Devices)
        {
            var queue = device.Runtime.QueueName + "_error";
            var handle = bus.ConnectReceiveEndpoint(queue, endpoint =>
            {
                // Only what the device moved here: not bound to the exchanges the messages are published to.
                endpoint.ConfigureConsumeTopology = false;
                endpoint.Handler<PushAccepted>(context => watch.Add(queue, context));
                endpoint.Handler<PushRejected>(context => watch.Add(queue, context));
                endpoint.Handler<TargetAdvanced>(context => watch.Add(queue, context));
            });
            await handle.Ready;
        }
        return watch;
    }

    private Task Add<T>(string queue, ConsumeContext<T> context) where T : class
    {
        _received.Enqueue($"{queue}: {typeof(T).Name} ({context.Headers.Get<string>("MT-Fault-Message")})");
        return Task.CompletedTask;
    }
}
