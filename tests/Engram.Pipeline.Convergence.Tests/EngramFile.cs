using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EngramApp;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Convergence.Tests;

/// <summary>A new Engram database, made as a device makes one on an empty file, with an Engram writer on it.</summary>
internal sealed class EngramFile : IDisposable
{
    /// <summary>The Go Now() every operation of a writer on <see cref="Clock"/> stamps.</summary>
    public const string Now = "2026-10-09 10:51:23.521496900";

    public static readonly TimeProvider Clock = new FixedClock(new DateTimeOffset(2026, 10, 9, 10, 51, 23, TimeSpan.Zero).AddTicks(5_214_969));

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-app-");

    /// <param name="seed">Seeds the writer's sync ids.</param>
    /// <param name="clock">The writer's clock; <see cref="Clock"/> when null.</param>
    public EngramFile(int seed = 1, TimeProvider? clock = null)
    {
        Path = System.IO.Path.Combine(_directory.FullName, "engram.db");
        new EngramDatabase($"Data Source={Path}").Attach("test-device", TimeProvider.System);
        SqliteConnection.ClearAllPools();
        Writer = new EngramWriter(Path, new Random(seed), clock ?? Clock);
    }

    public string Path { get; }

    public EngramWriter Writer { get; }

    public sealed record JournalRow(long Seq, string TargetKey, string Entity, string EntityKey, string Op, string Payload, string Source,
        string Project, string OccurredAt, string? AckedAt, string Disposition);

    public List<JournalRow> Journal() => Rows("""
        SELECT seq, target_key, entity, entity_key, op, payload, source, project, occurred_at, acked_at, disposition
        FROM sync_mutations ORDER BY seq
        """, r => new JournalRow(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5),
        r.GetString(6), r.GetString(7), r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9), r.GetString(10)));

    public string Payload(long seq) => Journal().Single(r => r.Seq == seq).Payload;

    public object? Scalar(string sql, params (string Name, object? Value)[] parameters)
    {
        using var connection = Open();
        using var command = Command(connection, sql, parameters);
        return command.ExecuteScalar();
    }

    public string Text(string sql, params (string Name, object? Value)[] parameters) => (string)Scalar(sql, parameters)!;

    public long Number(string sql, params (string Name, object? Value)[] parameters) => (long)Scalar(sql, parameters)!;

    public List<T> Rows<T>(string sql, Func<SqliteDataReader, T> read, params (string Name, object? Value)[] parameters)
    {
        using var connection = Open();
        using var command = Command(connection, sql, parameters);
        using var reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
        {
            rows.Add(read(reader));
        }
        return rows;
    }

    public void Execute(string sql, params (string Name, object? Value)[] parameters)
    {
        using var connection = Open();
        using var command = Command(connection, sql, parameters);
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        Writer.Dispose();
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection($"Data Source={Path};Pooling=False");
        connection.Open();
        return connection;
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        return command;
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    /// <summary>A clock a millisecond later at every reading, so that upstream's Go times order the operations.</summary>
    public sealed class SteppingClock : TimeProvider
    {
        private DateTimeOffset _now = new(2026, 10, 9, 10, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => _now = _now.AddMilliseconds(1);
    }
}
