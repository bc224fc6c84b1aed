using System.Globalization;
using System.Text.Json.Nodes;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.EmbeddedCloud;

/// <summary>
/// The embedded cloud log: one SQLite file, for running the whole pipeline in one process with no
/// servers. Every push transaction takes SQLite's single write lock (BEGIN IMMEDIATE), which
/// serialises all batches: seqs are 1..head in commit order by construction.
/// </summary>
public sealed class SqliteCloudStore : ICloudStore
{
    private readonly string _connectionString;

    public SqliteCloudStore(string path)
    {
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, DefaultTimeout = 60, Pooling = true,
        }.ToString();
        using var connection = Open();
        using var ddl = connection.CreateCommand();
        using var stream = typeof(SqliteCloudStore).Assembly.GetManifestResourceStream("sqlite-schema.sql")
            ?? throw new InvalidOperationException("sqlite-schema.sql is not embedded in the ingest assembly.");
        using var reader = new StreamReader(stream);
        // WAL is kept in the file, so it is set once here rather than on every open.
        ddl.CommandText = "PRAGMA journal_mode = WAL;" + reader.ReadToEnd();
        ddl.ExecuteNonQuery();
    }

    public Task<IPushTransaction> BeginPushAsync(string targetKey, string deviceId, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var connection = Open();
        try
        {
            var transaction = connection.BeginTransaction(deferred: false);
            var push = new PushTransaction(connection, transaction, targetKey, deviceId);
            push.LockDevice();
            return Task.FromResult<IPushTransaction>(push);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public Task<IReadOnlyList<CloudMutation>> ReadAfterAsync(PullMutations request, int limit, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        using var connection = Open();
        using var select = connection.CreateCommand();
        select.CommandText = """
            SELECT cloud_seq, device_id, local_seq, entity, op, entity_key,
                   CASE WHEN device_id = $device THEN '' ELSE payload END, occurred_at
            FROM cloud_mutations
            -- Seqs are dense (1..head), so the page is the range (after, after + limit]: bounding it keeps the
            -- scan to one page even when the planner's statistics lag a fast-growing log.
            WHERE target_key = $target AND cloud_seq > $after AND cloud_seq <= $after + $limit
            ORDER BY cloud_seq
            LIMIT $limit
            """;
        select.Parameters.AddWithValue("$target", request.TargetKey);
        select.Parameters.AddWithValue("$device", request.DeviceId);
        select.Parameters.AddWithValue("$after", request.AfterSeq);
        select.Parameters.AddWithValue("$limit", limit);
        var rows = new List<CloudMutation>();
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            rows.Add(new CloudMutation
            {
                CloudSeq = reader.GetInt64(0),
                DeviceId = reader.GetString(1),
                LocalSeq = reader.GetInt64(2),
                Entity = reader.GetString(3),
                Op = reader.GetString(4),
                EntityKey = reader.GetString(5),
                Payload = reader.GetString(6),
                OccurredAt = DateTimeOffset.Parse(reader.GetString(7), CultureInfo.InvariantCulture),
            });
        }
        return Task.FromResult<IReadOnlyList<CloudMutation>>(rows);
    }

    public Task<long> HeadAsync(string targetKey, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        using var connection = Open();
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT head FROM cloud_targets WHERE target_key = $target";
        select.Parameters.AddWithValue("$target", targetKey);
        return Task.FromResult(select.ExecuteScalar() as long? ?? 0);
    }

    public Task<bool> IsGrantedAsync(string targetKey, string deviceId, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        using var connection = Open();
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT EXISTS (SELECT 1 FROM cloud_device_grants WHERE target_key = $target AND device_id = $device)";
        select.Parameters.AddWithValue("$target", targetKey);
        select.Parameters.AddWithValue("$device", deviceId);
        return Task.FromResult((long)select.ExecuteScalar()! == 1);
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        using var pragmas = connection.CreateCommand();
        pragmas.CommandText = "PRAGMA synchronous = NORMAL;";
        pragmas.ExecuteNonQuery();
        return connection;
    }

    private static string Timestamp(DateTimeOffset value) => value.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture);

    private sealed class PushTransaction(SqliteConnection connection, SqliteTransaction transaction, string target, string device)
        : IPushTransaction
    {
        public long HighWaterMark { get; private set; }

        public void LockDevice()
        {
            Execute("""
                INSERT INTO cloud_targets (target_key) VALUES ($target) ON CONFLICT DO NOTHING;
                INSERT INTO cloud_devices (target_key, device_id) VALUES ($target, $device) ON CONFLICT DO NOTHING;
                """);
            using var select = Command("SELECT last_local_seq FROM cloud_devices WHERE target_key = $target AND device_id = $device");
            HighWaterMark = (long)select.ExecuteScalar()!;
        }

        public Task<IReadOnlyList<StoredAnswer>> FindAnswersAsync(IReadOnlyList<(Mutation Mutation, bool Valid)> duplicates, CancellationToken ct)
        {
            using var select = Command("""
                SELECT m.cloud_seq, m.entity, m.op, m.entity_key, m.payload, r.reason, r.detail
                FROM (SELECT $seq AS local_seq) d
                LEFT JOIN cloud_mutations m ON m.target_key = $target AND m.device_id = $device AND m.local_seq = d.local_seq
                LEFT JOIN cloud_rejections r ON r.target_key = $target AND r.device_id = $device AND r.local_seq = d.local_seq
                """);
            var answers = new List<StoredAnswer>(duplicates.Count);
            foreach (var (mutation, valid) in duplicates)
            {
                ct.ThrowIfCancellationRequested();
                select.Bind(("$seq", mutation.LocalSeq));
                using var reader = select.ExecuteReader();
                reader.Read();
                var same = !reader.IsDBNull(0) && valid
                    && reader.GetString(1) == mutation.Entity && reader.GetString(2) == mutation.Op
                    && reader.GetString(3) == mutation.EntityKey && SameJson(reader.GetString(4), mutation.Payload);
                answers.Add(new StoredAnswer(mutation.LocalSeq,
                    reader.IsDBNull(0) ? null : reader.GetInt64(0),
                    same,
                    reader.IsDBNull(5) ? null : reader.GetString(5),
                    reader.IsDBNull(6) ? null : reader.GetString(6)));
            }
            return Task.FromResult<IReadOnlyList<StoredAnswer>>(answers);
        }

        /// <summary>Equal as JSON values, as PostgreSQL's jsonb compares them: key order and spacing do not count.</summary>
        private static bool SameJson(string stored, string pushed) =>
            JsonNode.DeepEquals(JsonNode.Parse(stored), JsonNode.Parse(pushed));

        public Task<(IReadOnlyList<SeqMapping> Mappings, long Head)> AppendAsync(IReadOnlyList<Mutation> fresh,
            IReadOnlyList<MutationRejection> rejections, long newHighWaterMark, DateTimeOffset now, CancellationToken ct)
        {
            var at = Timestamp(now);
            using var head = Command("UPDATE cloud_targets SET head = head + $n WHERE target_key = $target RETURNING head");
            head.Bind(("$n", fresh.Count));
            var last = (long)head.ExecuteScalar()!;

            var mappings = new List<SeqMapping>(fresh.Count);
            using var insert = Command("""
                INSERT INTO cloud_mutations
                    (target_key, cloud_seq, device_id, local_seq, entity, op, entity_key, payload, occurred_at, accepted_at)
                VALUES ($target, $cloud, $device, $local, $entity, $op, $key, $payload, $occurred, $at)
                """);
            var cloudSeq = last - fresh.Count;
            foreach (var mutation in fresh)
            {
                cloudSeq++;
                insert.Bind(("$cloud", cloudSeq), ("$local", mutation.LocalSeq), ("$entity", mutation.Entity),
                    ("$op", mutation.Op), ("$key", mutation.EntityKey), ("$payload", mutation.Payload),
                    ("$occurred", Timestamp(mutation.OccurredAt)), ("$at", at));
                insert.ExecuteNonQuery();
                mappings.Add(new SeqMapping { LocalSeq = mutation.LocalSeq, CloudSeq = cloudSeq });
            }

            using var reject = Command("""
                INSERT INTO cloud_rejections (target_key, device_id, local_seq, reason, detail, rejected_at)
                VALUES ($target, $device, $local, $reason, $detail, $at) ON CONFLICT DO NOTHING
                """);
            foreach (var rejection in rejections)
            {
                reject.Bind(("$local", rejection.LocalSeq), ("$reason", rejection.Reason), ("$detail", rejection.Detail), ("$at", at));
                reject.ExecuteNonQuery();
            }

            using var mark = Command("""
                UPDATE cloud_devices SET last_local_seq = $mark
                WHERE target_key = $target AND device_id = $device AND last_local_seq < $mark
                """);
            mark.Bind(("$mark", newHighWaterMark));
            mark.ExecuteNonQuery();
            ct.ThrowIfCancellationRequested();
            return Task.FromResult<(IReadOnlyList<SeqMapping>, long)>((mappings, last));
        }

        public Task CommitAsync(CancellationToken ct) => transaction.CommitAsync(ct);

        public async ValueTask DisposeAsync()
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }

        private void Execute(string sql)
        {
            using var command = Command(sql);
            command.ExecuteNonQuery();
        }

        private SqliteCommand Command(string sql) => transaction.Command(sql, ("$target", target), ("$device", device));
    }
}
