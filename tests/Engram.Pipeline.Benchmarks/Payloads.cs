using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation;

namespace Engram.Pipeline.Benchmarks;

/// <summary>The same realistic observation payloads (200 B–4 KiB) for every row of the table.</summary>
public static class Payloads
{
    public static List<Mutation> Mutations(int count, int seed = 1) => Chunks(count, count, seed).SelectMany(c => c).ToList();

    /// <summary>The same stream in chunks, generated as it is read, so a million rows never sit in memory at once.</summary>
    public static IEnumerable<Mutation[]> Chunks(int count, int chunk, int seed = 1)
    {
        var workload = new Workload($"bench-{seed}", seed);
        for (var done = 0; done < count; done += chunk)
        {
            var first = done + 1;
            yield return workload.Next(Math.Min(chunk, count - done)).Select((m, i) => new Mutation
            {
                LocalSeq = first + i, Entity = m.Entity, Op = m.Op, EntityKey = m.EntityKey, Payload = m.Payload, OccurredAt = DateTimeOffset.UtcNow,
            }).ToArray();
        }
    }

    /// <summary>A PushMutations body as MassTransit would carry it, for the raw transport ceiling.</summary>
    public static byte[] BatchBody(IReadOnlyList<Mutation> mutations) =>
        JsonSerializer.SerializeToUtf8Bytes(new PushMutations
        {
            TargetKey = "bench", DeviceId = "bench", PreviousLocalSeq = mutations[0].LocalSeq - 1, Mutations = mutations,
        }, new JsonSerializerOptions(JsonSerializerDefaults.Web));
}
