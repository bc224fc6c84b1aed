using System.Text.Json;
using Engram.Pipeline.Cli.Simulation;
using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.Benchmarks;

/// <summary>The same realistic observation payloads (200 B–4 KiB) for every row of the table.</summary>
public static class Payloads
{
    public static List<Mutation> Mutations(int count, int seed = 1)
    {
        var workload = new Workload($"bench-{seed}", seed);
        return workload.Next(count).Select((m, i) => new Mutation
        {
            LocalSeq = i + 1, Entity = m.Entity, Op = m.Op, EntityKey = m.EntityKey, Payload = m.Payload, OccurredAt = DateTimeOffset.UtcNow,
        }).ToList();
    }

    /// <summary>A PushMutations body as MassTransit would carry it, for the raw transport ceiling.</summary>
    public static byte[] BatchBody(IReadOnlyList<Mutation> mutations) =>
        JsonSerializer.SerializeToUtf8Bytes(new PushMutations
        {
            TargetKey = "bench", DeviceId = "bench", PreviousLocalSeq = mutations[0].LocalSeq - 1, Mutations = mutations,
        }, new JsonSerializerOptions(JsonSerializerDefaults.Web));
}
