using System.Globalization;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EngramApp;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Tests;

/// <summary>
/// A device attached to an Engram database in a temp file, with the Engram application writing it on its own
/// connection as upstream does (<see cref="EngramWriter"/>). Project <c>team</c> is enrolled and has session
/// <c>s1</c>, whose journal row Engram's own sync acked before the device came, so the journal holds only what a
/// test writes.
/// </summary>
public sealed class TestDevice : IDisposable
{
    public const string Project = "team";
    public const string Session = "s1";
    public const string DeviceId = "device-a";

    private readonly DirectoryInfo _directory;

    private TestDevice(DirectoryInfo directory, string path, int seed)
    {
        _directory = directory;
        Path = path;
        Database = new EngramDatabase($"Data Source={path}");
        Identity = new DeviceIdentity(Database.Attach(DeviceId, TimeProvider.System));
        Reader = new JournalReader(Database);
        Cursor = new CursorService(Database, Identity, TimeProvider.System);
        Engram = new EngramWriter(path, new Random(seed));
    }

    /// <summary>The target of project <see cref="Project"/>: <c>team</c> on the wire, <c>cloud:team</c> in the database.</summary>
    public static SyncTarget Team { get; } = new(Project);

    public string Path { get; }
    public EngramDatabase Database { get; }
    public DeviceIdentity Identity { get; }
    public JournalReader Reader { get; }
    public CursorService Cursor { get; }

    /// <summary>The Engram application, writing on its own connection.</summary>
    public EngramWriter Engram { get; }

    /// <summary>Device <see cref="DeviceId"/> on a new Engram database; two made with the same <paramref name="seed"/> and writes hold the same journal.</summary>
    public static TestDevice Create(int seed = 1)
    {
        var directory = Directory.CreateTempSubdirectory("engram-device-test-");
        var device = new TestDevice(directory, System.IO.Path.Combine(directory.FullName, "engram.db"), seed);
        device.Engram.EnrollProject(Project);
        device.Engram.CreateSession(Session, Project, "/home/a/team");
        device.Execute("UPDATE sync_mutations SET acked_at = datetime('now')");
        return device;
    }

    /// <summary>
    /// Engram withdraws a pending row: session s2 starts (seq Started), gets an observation, and ends; the end's upsert
    /// replaces the unsent start's, whose row is gone from the journal.
    /// </summary>
    public (long Started, long Observation, long Ended) WithdrawnSessionUpsert()
    {
        var started = Assert.Single(Engram.CreateSession("s2", Project, "/home/a/team"));
        var observation = RecordObservations(1, session: "s2")[0];
        var ended = Assert.Single(Engram.EndSession("s2", "done"));
        Assert.Equal(0, Count($"SELECT COUNT(*) FROM sync_mutations WHERE seq = {started}"));
        return (started, observation, ended);
    }

    /// <summary>Saves <paramref name="count"/> distinct observations in session s1; returns the seq each journaled.</summary>
    public IReadOnlyList<long> RecordObservations(int count, string title = "note", string project = Project, string session = Session) =>
        Enumerable.Range(0, count)
            .Select(i => Assert.Single(Engram.AddObservation(session, "discovery", $"{title} {i}", $"what {title} {i} says", project).Seqs))
            .ToList();

    public Task ApplyAsync(PushAccepted reply) => Cursor.ApplyAcceptedAsync(reply, CancellationToken.None);

    public Task<PendingBatch?> ReadBatchAsync(long? afterSeq, int maxMutations = 100, int maxBytes = 1 << 20) =>
        Reader.ReadBatchAsync(Team, afterSeq, maxMutations, maxBytes, CancellationToken.None);

    /// <summary>The cloud's answer to this device's push on <c>team</c>, mapping each (local, cloud) pair.</summary>
    public static PushAccepted Reply(params (long Local, long Cloud)[] mappings) => new()
    {
        TargetKey = Project,
        DeviceId = DeviceId,
        Mappings = mappings.Select(m => new SeqMapping { LocalSeq = m.Local, CloudSeq = m.Cloud }).ToList(),
        Rejected = [],
        Head = mappings.Length == 0 ? 0 : mappings.Max(m => m.Cloud),
    };

    public static MutationRejection Rejection(long localSeq, string reason = RejectionReasons.PayloadNotJson) =>
        new() { LocalSeq = localSeq, Reason = reason, Detail = $"row {localSeq} refused" };

    public void Execute(string sql, params (string Name, object? Value)[] parameters)
    {
        using var connection = Database.Open();
        using var transaction = connection.BeginTransaction();
        using var command = transaction.Command(sql, parameters);
        command.ExecuteNonQuery();
        transaction.Commit();
    }

    public object? Scalar(string sql, params (string Name, object? Value)[] parameters)
    {
        using var connection = Database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Bind(parameters);
        return command.ExecuteScalar();
    }

    public long Count(string sql, params (string Name, object? Value)[] parameters) => (long)Scalar(sql, parameters)!;

    public string? Text(string sql, params (string Name, object? Value)[] parameters) => Scalar(sql, parameters) as string;

    /// <summary>Every row of <paramref name="sql"/>, its values joined by <c>|</c> (NULL as <c>null</c>).</summary>
    public IReadOnlyList<string> Rows(string sql)
    {
        using var connection = Database.Open();
        return Rows(connection, sql);
    }

    public static IReadOnlyList<string> Rows(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        var rows = new List<string>();
        while (reader.Read())
        {
            rows.Add(string.Join('|', Enumerable.Range(0, reader.FieldCount).Select(i => reader.GetValue(i) switch
            {
                DBNull => "null",
                byte[] blob => Convert.ToHexString(blob),
                var value => Convert.ToString(value, CultureInfo.InvariantCulture),
            })));
        }
        return rows;
    }

    /// <summary>What the cloud's answers leave in the database, without the times they were recorded at.</summary>
    public string SyncDump() => string.Join('\n', new[]
    {
        "SELECT seq, acked_at IS NOT NULL, disposition, disposition_reason, disposition_evidence, disposition_at IS NOT NULL FROM sync_mutations ORDER BY seq",
        "SELECT target_key, local_seq, cloud_seq FROM sync_seq_mapping ORDER BY target_key, local_seq",
        "SELECT target_key, local_seq, reason, detail FROM pipeline_rejections ORDER BY target_key, local_seq",
        """
        SELECT target_key, lifecycle, last_enqueued_seq, last_acked_seq, consecutive_failures, reason_code, last_success_at IS NOT NULL, unified_cursor
        FROM sync_state ORDER BY target_key
        """,
        "SELECT target_key, cloud_head, sent_through, last_refusal FROM pipeline_targets ORDER BY target_key",
        "SELECT target_key, entity, entity_key, last_mutation_seq FROM sync_delete_tombstone_remote_floors ORDER BY 1, 2, 3",
    }.SelectMany(Rows));

    public void Dispose()
    {
        Engram.Dispose();
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }
}
