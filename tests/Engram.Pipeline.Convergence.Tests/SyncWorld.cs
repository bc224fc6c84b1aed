using Engram.Pipeline.Cloud;
using Engram.Pipeline.Cloud.Pull;
using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Pull;
using Engram.Pipeline.Simulation.EmbeddedCloud;
using Engram.Pipeline.Simulation.Verification;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Convergence.Tests;

/// <summary>
/// The whole sync loop without a transport: the embedded cloud store with the real ingestor and page
/// reader, and devices with the real journal, cursor service and page applier. Messages travel
/// through <see cref="Network"/>, which a test can deliver in any order, duplicate or drop.
/// </summary>
public sealed class SyncWorld : IAsyncDisposable
{
    public const string Target = "team";

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-sync-");
    private readonly SqliteCloudStore _store;
    private readonly PushIngestor _ingestor;
    private readonly PullReader _reader;
    private readonly List<SyncDevice> _devices = [];

    public SyncWorld(int devices)
    {
        _store = new SqliteCloudStore(Path.Combine(_directory.FullName, "cloud.db"));
        var options = Options.Create(new IngestOptions());
        _ingestor = new PushIngestor(_store, options, TimeProvider.System);
        _reader = new PullReader(_store, options);
        for (var i = 0; i < devices; i++)
        {
            _devices.Add(new SyncDevice($"device-{i + 1}", Path.Combine(_directory.FullName, $"device-{i + 1}.db")));
        }
    }

    public IReadOnlyList<SyncDevice> Devices => _devices;

    /// <summary>Messages sent and not delivered yet: to the cloud, or to a device.</summary>
    public List<Message> Network { get; } = [];

    public abstract record Message;
    public sealed record ToCloud(PushMutations Push) : Message;
    public sealed record Reply(int Device, object Answer) : Message;

    public Task<IReadOnlyList<long>> RecordAsync(int device, params NewMutation[] mutations) =>
        _devices[device].Runtime.Journal.RecordAsync(mutations, CancellationToken.None);

    /// <summary>Sends the device's next batch (after the last one it sent, or from its first unanswered row).</summary>
    public async Task<bool> PushAsync(int device, int maxMutations)
    {
        var sender = _devices[device];
        var batch = await sender.Reader.ReadBatchAsync(sender.LastSent, maxMutations, int.MaxValue, CancellationToken.None);
        if (batch is null)
        {
            sender.LastSent = null;
            return false;
        }
        sender.LastSent = batch.LastSeq;
        Network.Add(new ToCloud(new PushMutations
        {
            TargetKey = Target, DeviceId = sender.Id, PreviousLocalSeq = batch.PreviousLocalSeq, Mutations = batch.Mutations,
        }));
        return true;
    }

    /// <summary>Asks for a page after the device's cursor; the page travels back through the network.</summary>
    public async Task PullAsync(int device, int limit)
    {
        var page = await _reader.ReadPageAsync(new PullMutations
        {
            TargetKey = Target, DeviceId = _devices[device].Id, AfterSeq = await _devices[device].CursorAsync(), Limit = limit,
        }, CancellationToken.None);
        Network.Add(new Reply(device, page));
    }

    /// <summary>Delivers one message: the cloud ingests a push and replies; a device applies an answer or a page.</summary>
    public async Task DeliverAsync(int index)
    {
        var message = Network[index];
        Network.RemoveAt(index);
        switch (message)
        {
            case ToCloud { Push: var push }:
                var device = _devices.FindIndex(d => d.Id == push.DeviceId);
                Network.Add(new Reply(device, await _ingestor.IngestAsync(push, CancellationToken.None) switch
                {
                    PushOutcome.Accepted a => a.Reply,
                    PushOutcome.Refused r => (object)r.Reply,
                    _ => throw new InvalidOperationException(),
                }));
                break;
            case Reply { Device: var d, Answer: PushAccepted accepted }:
                await _devices[d].Runtime.Cursor.ApplyAcceptedAsync(accepted, CancellationToken.None);
                break;
            case Reply { Device: var d, Answer: PushRejected }:
                // The publisher sends again from its first unanswered row.
                _devices[d].LastSent = null;
                break;
            case Reply { Device: var d, Answer: MutationsPage page }:
                await _devices[d].Applier.ApplyAsync(page, CancellationToken.None);
                break;
        }
    }

    /// <summary>A device process dies and starts again: only its database survives.</summary>
    public void Restart(int device)
    {
        SqliteConnection.ClearAllPools();
        _devices[device] = new SyncDevice(_devices[device].Id, _devices[device].Path);
    }

    /// <summary>
    /// Lets everything finish: delivers what is in flight, then pushes and pulls every device in order
    /// until nothing is pending and every cursor is at the head.
    /// </summary>
    public async Task QuiesceAsync()
    {
        for (var round = 0; round < 100; round++)
        {
            while (Network.Count > 0)
            {
                await DeliverAsync(0);
            }
            var settled = true;
            for (var d = 0; d < _devices.Count; d++)
            {
                _devices[d].LastSent = null;
                while (await PushAsync(d, 50))
                {
                    settled = false;
                    while (Network.Count > 0)
                    {
                        await DeliverAsync(0);
                    }
                }
            }
            for (var d = 0; d < _devices.Count; d++)
            {
                while (await _devices[d].CursorAsync() < await _store.HeadAsync(Target, CancellationToken.None))
                {
                    settled = false;
                    await PullAsync(d, 100);
                    await DeliverAsync(Network.Count - 1);
                }
            }
            if (settled)
            {
                return;
            }
        }
        throw new InvalidOperationException("The world did not settle in 100 rounds.");
    }

    public Task<IReadOnlyList<Verdict>> CheckAsync(bool quiescent) =>
        quiescent
            ? InvariantChecker.CheckAllAsync(_store, Refs(), CancellationToken.None)
            : InvariantChecker.CheckPushAsync(_store, Refs(), CancellationToken.None);

    private List<DeviceDatabaseRef> Refs() => _devices.Select(d => new DeviceDatabaseRef(d.Id, Target, d.Path)).ToList();

    public async Task<string?> EntityAsync(int device, string key)
    {
        await using var connection = new SqliteConnection($"Data Source={_devices[device].Path};Mode=ReadOnly");
        await connection.OpenAsync();
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT CASE WHEN deleted = 1 THEN 'deleted:' ELSE '' END || payload FROM entities WHERE entity_key = $key";
        select.Parameters.AddWithValue("$key", key);
        return await select.ExecuteScalarAsync() as string;
    }

    public ValueTask DisposeAsync()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
        return ValueTask.CompletedTask;
    }
}

/// <summary>One device's database and the parts of it the sync loop drives.</summary>
public sealed class SyncDevice
{
    public SyncDevice(string id, string path)
    {
        Id = id;
        Path = path;
        Runtime = DeviceServices.CreateRuntime($"Data Source={path}", new DeviceOptions { Id = id, Target = SyncWorld.Target },
            new PublisherOptions(), new PullerOptions(), TimeProvider.System, NullLoggerFactory.Instance);
        Reader = new JournalReader(Runtime.Database, Runtime.Identity);
        Applier = new PageApplier(Runtime.Database, Runtime.Identity, TimeProvider.System);
    }

    public string Id { get; }
    public string Path { get; }
    public DeviceRuntime Runtime { get; }
    public JournalReader Reader { get; }
    public PageApplier Applier { get; }

    /// <summary>The last seq sent in the current window (lost on restart, as the publisher's is).</summary>
    public long? LastSent { get; set; }

    public async Task<long> CursorAsync()
    {
        await using var connection = await Runtime.Database.OpenAsync(CancellationToken.None);
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT unified_cursor FROM sync_state WHERE target_key = $t";
        select.Parameters.AddWithValue("$t", SyncWorld.Target);
        return await select.ExecuteScalarAsync() as long? ?? 0;
    }
}
