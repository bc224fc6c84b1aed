using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Simulation.EngramApp;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Benchmarks;

/// <summary>
/// The same Engram-shaped mutations for every row of the table: what the Engram application journals (sessions,
/// observations of 200 B–4 KiB, prompts, relations, edits and deletes, payloads as upstream writes them), made by
/// <see cref="EngramWorkload"/> on a real Engram database.
/// </summary>
public static class Payloads
{
    /// <summary>The Engram project the benchmark's devices write and sync.</summary>
    public const string Project = "bench";

    /// <summary>The journal columns a <see cref="Mutation"/> is read from, in <see cref="Read"/>'s order.</summary>
    public const string MutationColumns = "entity, op, entity_key, payload, occurred_at";

    /// <summary>
    /// How many rows the Engram application writes for a data set; a larger one repeats them. Engram counts its unsent
    /// journal on every write, reading each pending row, so writing an unsent journal of n rows costs n²: a million rows
    /// through the application would take hours.
    /// </summary>
    public const int EngramRows = 10_000;

    public static List<Mutation> Mutations(int count, int seed = 1, string project = Project) =>
        Chunks(count, count, seed, project).SelectMany(c => c).ToList();

    /// <summary>
    /// <paramref name="count"/> rows of what Engram journals in <paramref name="project"/> for a device of its own,
    /// numbered 1..count: the first <see cref="EngramRows"/> as the application journals them (Engram's seqs have gaps
    /// where a newer session upsert replaced an unsent one), then the same rows again and again, as if their entities
    /// were edited once more. They are journaled into a scratch database and read back in chunks as they are
    /// enumerated, so a million rows never sit in memory at once.
    /// </summary>
    public static IEnumerable<Mutation[]> Chunks(int count, int chunk, int seed = 1, string project = Project)
    {
        var path = Path.Combine(Path.GetTempPath(), $"engram-payloads-{Guid.NewGuid():N}.db");
        try
        {
            using (var engram = NewEngram(path, $"payloads-{seed}", seed))
            {
                Journal(new EngramWorkload(seed, $"payloads-{seed}", [project], enrollAfter: 0), engram, Math.Min(count, EngramRows));
            }
            using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
            connection.Open();
            using var select = connection.CreateCommand();
            select.CommandText = $"SELECT {MutationColumns} FROM sync_mutations ORDER BY seq LIMIT $count";
            select.Parameters.AddWithValue("$count", count);
            var rows = new List<Mutation>(chunk);
            var localSeq = 0L;
            while (localSeq < count)
            {
                using var reader = select.ExecuteReader();
                while (localSeq < count && reader.Read())
                {
                    rows.Add(Read(reader, ++localSeq));
                    if (rows.Count == chunk)
                    {
                        yield return [.. rows];
                        rows.Clear();
                    }
                }
            }
            if (rows.Count > 0)
            {
                yield return [.. rows];
            }
        }
        finally
        {
            foreach (var file in new[] { path, $"{path}-wal", $"{path}-shm" })
            {
                File.Delete(file);
            }
        }
    }

    /// <summary>
    /// A new Engram database for <paramref name="deviceId"/>, with upstream's schema made as the device's attach makes
    /// it, and the Engram application writing it (its sync ids seeded by <paramref name="seed"/>).
    /// </summary>
    public static EngramWriter NewEngram(string path, string deviceId, int seed)
    {
        new EngramDatabase($"Data Source={path}").Attach(deviceId, TimeProvider.System);
        // The attach leaves a pooled connection behind; the writer and the device open their own.
        SqliteConnection.ClearAllPools();
        return new EngramWriter(path, new Random(seed));
    }

    /// <summary>
    /// Uses Engram through <paramref name="workload"/> until its journal holds at least <paramref name="rows"/> rows:
    /// counted in the journal itself, because Engram deletes a superseded unsent session upsert.
    /// </summary>
    public static void Journal(EngramWorkload workload, EngramWriter engram, long rows)
    {
        using var connection = new SqliteConnection($"Data Source={engram.Path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT COUNT(*) FROM sync_mutations";
        for (long journaled; (journaled = (long)count.ExecuteScalar()!) < rows;)
        {
            while (journaled < rows)
            {
                journaled += workload.Next(engram).Count;
            }
        }
    }

    /// <summary>A journal row, selected as <see cref="MutationColumns"/>, as the device sends it under <paramref name="localSeq"/>.</summary>
    public static Mutation Read(SqliteDataReader reader, long localSeq) => new()
    {
        LocalSeq = localSeq,
        Entity = reader.GetString(0),
        Op = reader.GetString(1),
        EntityKey = reader.GetString(2),
        Payload = reader.GetString(3),
        OccurredAt = EngramTime.Parse(reader.GetString(4)) ?? DateTimeOffset.UnixEpoch,
    };

    /// <summary>A PushMutations body as MassTransit would carry it, for the raw transport ceiling.</summary>
    public static byte[] BatchBody(IReadOnlyList<Mutation> mutations) =>
        JsonSerializer.SerializeToUtf8Bytes(new PushMutations
        {
            TargetKey = Project, DeviceId = "bench", PreviousLocalSeq = mutations[0].LocalSeq - 1, Mutations = mutations,
        }, new JsonSerializerOptions(JsonSerializerDefaults.Web));
}
