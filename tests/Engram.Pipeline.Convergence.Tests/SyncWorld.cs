using Engram.Pipeline.Cloud;
using Engram.Pipeline.Cloud.Pull;
using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Pull;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EmbeddedCloud;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Simulation.Verification;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Convergence.Tests;

/// <summary>
/// The whole sync loop without a transport: the embedded cloud store with the real ingestor and page reader, and
/// devices with the real journal reader, cursor service and page applier, each on an Engram database that its own
/// Engram application (<see cref="EngramWriter"/>) writes, all enrolled in one project, the target. Messages travel
/// through <see cref="Network"/>, which a test can deliver in any order, duplicate or drop.
/// </summary>
public sealed class SyncWorld : IAsyncDisposable
{
    /// <summary>The project every device has enrolled: the target, and its key on the wire.</summary>
    public const string Project = "engram";

    public static readonly SyncTarget Target = new(Project);

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-sync-");
    private readonly SqliteCloudStore _store;
    private readonly PushIngestor _ingestor;
    private readonly PullReader _reader;
    private readonly List<SyncDevice> _devices = [];

    /// <param name="devices">How many devices, named device-1, device-2, …</param>
    /// <param name="seed">Seeds the Engram applications' sync ids (device i gets seed + i).</param>
    public SyncWorld(int devices, int seed = 1)
    {
        _store = new SqliteCloudStore(Path.Combine(_directory.FullName, "cloud.db"));
        var options = Options.Create(new IngestOptions());
        _ingestor = new PushIngestor(_store, options, TimeProvider.System);
        _reader = new PullReader(_store, options);
        for (var i = 0; i < devices; i++)
        {
            _devices.Add(SyncDevice.Create($"device-{i + 1}", Path.Combine(_directory.FullName, $"device-{i + 1}.db"), seed + i));
        }
    }

    public IReadOnlyList<SyncDevice> Devices => _devices;

    /// <summary>Messages sent and not delivered yet: to the cloud, or to a device.</summary>
    public List<Message> Network { get; } = [];

    public abstract record Message;

    public sealed record ToCloud(PushMutations Push) : Message;

    public sealed record Reply(int Device, object Answer) : Message;

    /// <summary>The Engram application of <paramref name="device"/>.</summary>
    public EngramWriter Engram(int device) => _devices[device].Engram;

    /// <summary>Sends the device's next batch (after the last one it sent, or from its first unanswered row).</summary>
    public async Task<bool> PushAsync(int device, int maxMutations)
    {
        var sender = _devices[device];
        var batch = await sender.Reader.ReadBatchAsync(Target, sender.LastSent, maxMutations, int.MaxValue, CancellationToken.None);
        if (batch is null)
        {
            sender.LastSent = null;
            return false;
        }
        sender.LastSent = batch.LastSeq;
        Network.Add(new ToCloud(new PushMutations
        {
            TargetKey = Project, DeviceId = sender.Id, PreviousLocalSeq = batch.PreviousLocalSeq, Mutations = batch.Mutations,
        }));
        await sender.Reader.MarkSentAsync(batch, CancellationToken.None);
        return true;
    }

    /// <summary>Asks for a page after the device's cursor; the page travels back through the network.</summary>
    public async Task PullAsync(int device, int limit)
    {
        var page = await _reader.ReadPageAsync(new PullMutations
        {
            TargetKey = Project, DeviceId = _devices[device].Id, AfterSeq = await _devices[device].CursorAsync(), Limit = limit,
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
                    PushOutcome.Refused r => r.Reply,
                    _ => throw new InvalidOperationException("The ingestor gave an outcome this world does not know."),
                }));
                break;
            case Reply { Device: var d, Answer: PushAccepted accepted }:
                await _devices[d].Cursor.ApplyAcceptedAsync(accepted, CancellationToken.None);
                break;
            case Reply { Device: var d, Answer: PushRejected refused }:
                // As the device's consumer does: an overtaking batch is only sent again; any other refusal is kept.
                if (refused.Reason != RejectionReasons.OutOfOrder)
                {
                    await _devices[d].Cursor.RecordRefusalAsync(refused, CancellationToken.None);
                }
                _devices[d].LastSent = null;
                break;
            case Reply { Device: var d, Answer: MutationsPage page }:
                await _devices[d].Applier.ApplyAsync(Target, page, CancellationToken.None);
                break;
            default:
                throw new InvalidOperationException($"Nobody receives {message}.");
        }
    }

    /// <summary>Delivers everything in flight, oldest first, with whatever it causes.</summary>
    public async Task DeliverAllAsync()
    {
        while (Network.Count > 0)
        {
            await DeliverAsync(0);
        }
    }

    /// <summary>A device process dies and starts again: only its database survives (and Engram, which runs on its own).</summary>
    public void Restart(int device)
    {
        SqliteConnection.ClearAllPools();
        _devices[device] = _devices[device].Restarted();
    }

    /// <summary>
    /// Lets everything finish: delivers what is in flight, then pushes and pulls every device in order until nothing is
    /// pending and every cursor is at the head.
    /// </summary>
    public async Task QuiesceAsync()
    {
        for (var round = 0; round < 100; round++)
        {
            await DeliverAllAsync();
            var settled = true;
            for (var d = 0; d < _devices.Count; d++)
            {
                _devices[d].LastSent = null;
                while (await PushAsync(d, 50))
                {
                    settled = false;
                    await DeliverAllAsync();
                }
            }
            for (var d = 0; d < _devices.Count; d++)
            {
                while (await _devices[d].CursorAsync() < await HeadAsync())
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

    public Task<long> HeadAsync() => _store.HeadAsync(Project, CancellationToken.None);

    /// <summary>The cloud log, as a checker reads it (every row with its payload).</summary>
    public async Task<IReadOnlyList<CloudMutation>> CloudLogAsync() =>
        await _store.ReadAfterAsync(new PullMutations { TargetKey = Project, DeviceId = "\u0001test", AfterSeq = 0, Limit = 100_000 },
            100_000, CancellationToken.None);

    /// <summary>I1–I5 (<paramref name="quiescent"/> false: what holds at every moment) or I1–I6.</summary>
    public Task<IReadOnlyList<Verdict>> CheckAsync(bool quiescent) =>
        quiescent
            ? InvariantChecker.CheckAllAsync(_store, Refs(), CancellationToken.None)
            : InvariantChecker.CheckPushAsync(_store, Refs(), CancellationToken.None);

    private List<DeviceDatabaseRef> Refs() => _devices.Select(d => new DeviceDatabaseRef(d.Id, d.Path, [Project])).ToList();

    public ValueTask DisposeAsync()
    {
        foreach (var device in _devices)
        {
            device.Engram.Dispose();
        }
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// One device: its Engram database, the Engram application writing it, and the parts of the device the sync loop
/// drives (journal reader, cursor service, page applier).
/// </summary>
public sealed class SyncDevice
{
    private SyncDevice(string id, string path, EngramWriter engram)
    {
        Id = id;
        Path = path;
        Engram = engram;
        Database = new EngramDatabase($"Data Source={path}");
        var identity = new DeviceIdentity(Database.Attach(id, TimeProvider.System));
        Reader = new JournalReader(Database);
        Cursor = new CursorService(Database, identity, TimeProvider.System);
        Applier = new PageApplier(Database, identity, TimeProvider.System);
    }

    /// <summary>A new Engram database the device attaches to, with Engram running on it and the project enrolled.</summary>
    public static SyncDevice Create(string id, string path, int seed)
    {
        File.WriteAllBytes(path, NewEngramDatabase.Value);
        new EngramDatabase($"Data Source={path}").Attach(id, TimeProvider.System);
        var engram = new EngramWriter(path, new Random(seed), TimeProvider.System);
        engram.EnrollProject(SyncWorld.Project);
        return new SyncDevice(id, path, engram);
    }

    /// <summary>
    /// What <see cref="EngramDatabase.Attach"/> makes of an empty file, minus the device id it stores: made once and
    /// copied, because upstream's schema takes longer to create than a whole small schedule takes to run.
    /// </summary>
    private static readonly Lazy<byte[]> NewEngramDatabase = new(() =>
    {
        var directory = Directory.CreateTempSubdirectory("engram-template-");
        try
        {
            var path = System.IO.Path.Combine(directory.FullName, "engram.db");
            new EngramDatabase($"Data Source={path}").Attach("template", TimeProvider.System);
            using (var connection = new SqliteConnection($"Data Source={path};Pooling=False"))
            {
                connection.Open();
                using var forget = connection.CreateCommand();
                forget.CommandText = "DELETE FROM pipeline_device";
                forget.ExecuteNonQuery();
            }
            SqliteConnection.ClearAllPools();
            return File.ReadAllBytes(path);
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            directory.Delete(recursive: true);
        }
    });

    /// <summary>The same database and Engram application, with a device process started again.</summary>
    public SyncDevice Restarted() => new(Id, Path, Engram);

    public string Id { get; }
    public string Path { get; }
    public EngramWriter Engram { get; }
    public EngramDatabase Database { get; }
    public JournalReader Reader { get; }
    public CursorService Cursor { get; }
    public PageApplier Applier { get; }

    /// <summary>The last seq sent in the current window (lost on restart, as the publisher's is).</summary>
    public long? LastSent { get; set; }

    public async Task<long> CursorAsync() =>
        await ScalarAsync("SELECT unified_cursor FROM sync_state WHERE target_key = $target", ("$target", SyncWorld.Target.Key)) as long? ?? 0;

    /// <summary>The first column of the first row of a query on the device's Engram database.</summary>
    public async Task<object?> ScalarAsync(string sql, params (string Name, object? Value)[] parameters)
    {
        var rows = await RowsAsync(sql, r => r.IsDBNull(0) ? null : r.GetValue(0), parameters);
        return rows.Count == 0 ? null : rows[0];
    }

    public async Task<long> CountAsync(string sql, params (string Name, object? Value)[] parameters) =>
        (long)(await ScalarAsync(sql, parameters))!;

    public async Task<List<T>> RowsAsync<T>(string sql, Func<SqliteDataReader, T> read, params (string Name, object? Value)[] parameters)
    {
        await using var connection = await Database.OpenAsync(CancellationToken.None);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync())
        {
            rows.Add(read(reader));
        }
        return rows;
    }

    /// <summary>Writes to the device's Engram database with plain SQL, as any other program on the machine may.</summary>
    public async Task ExecuteAsync(string sql, params (string Name, object? Value)[] parameters)
    {
        await using var connection = new SqliteConnection($"Data Source={Path};Pooling=False");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>The journal row with <paramref name="seq"/>: whether it is acked, its disposition and reason; null when Engram removed it.</summary>
    public async Task<(bool Acked, string Disposition, string? Reason)?> JournalRowAsync(long seq) =>
        (await RowsAsync("SELECT acked_at IS NOT NULL, disposition, disposition_reason FROM sync_mutations WHERE seq = $seq",
            r => ((bool Acked, string Disposition, string? Reason)?)(r.GetBoolean(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2)),
            ("$seq", seq))).SingleOrDefault();

    /// <summary>Where the cloud put this device's journal rows: local seq → cloud seq.</summary>
    public async Task<Dictionary<long, long>> MappingsAsync() =>
        (await RowsAsync("SELECT local_seq, cloud_seq FROM sync_seq_mapping WHERE target_key = $target",
            r => (r.GetInt64(0), r.GetInt64(1)), ("$target", SyncWorld.Target.Key))).ToDictionary(m => m.Item1, m => m.Item2);

    /// <summary>Journal rows of the project still to be answered by the cloud.</summary>
    public Task<long> PendingAsync() =>
        CountAsync("""
            SELECT COUNT(*) FROM sync_mutations
            WHERE target_key = 'cloud' AND project = $project AND acked_at IS NULL AND disposition = 'pending'
            """, ("$project", SyncWorld.Project));

    /// <summary>The title and content of the live observation with <paramref name="syncId"/>; null when there is none.</summary>
    public async Task<string?> ObservationAsync(string syncId) =>
        (await RowsAsync("SELECT title || ': ' || content FROM observations WHERE sync_id = $id AND deleted_at IS NULL",
            r => r.GetString(0), ("$id", syncId))).SingleOrDefault();

    /// <summary>How many observation rows carry <paramref name="syncId"/>, live or soft-deleted.</summary>
    public Task<long> ObservationRowsAsync(string syncId) =>
        CountAsync("SELECT COUNT(*) FROM observations WHERE sync_id = $id", ("$id", syncId));

    /// <summary>Engram's own search: the sync ids of the observations whose text holds <paramref name="text"/>.</summary>
    public Task<List<string>> SearchAsync(string text) =>
        RowsAsync("""
            SELECT o.sync_id FROM observations_fts f JOIN observations o ON o.id = f.rowid
            WHERE observations_fts MATCH $query ORDER BY o.sync_id
            """, r => r.GetString(0), ("$query", Quoted(text)));

    /// <summary>Engram's own prompt search: the sync ids of the prompts whose content holds <paramref name="text"/>.</summary>
    public Task<List<string>> SearchPromptsAsync(string text) =>
        RowsAsync("""
            SELECT p.sync_id FROM prompts_fts f JOIN user_prompts p ON p.id = f.rowid
            WHERE prompts_fts MATCH $query ORDER BY p.sync_id
            """, r => r.GetString(0), ("$query", Quoted(text)));

    private static string Quoted(string text) => "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
