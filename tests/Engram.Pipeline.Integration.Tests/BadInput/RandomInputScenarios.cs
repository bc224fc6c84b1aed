using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Npgsql;
using Xunit.Abstractions;
using static Engram.Pipeline.Integration.Tests.BadInput.PushJson;

namespace Engram.Pipeline.Integration.Tests.BadInput;

/// <summary>One generated input, and what is known of how it must end.</summary>
/// <param name="Kind">
/// <c>modelled</c>: a well-formed batch whose mutations are valid or carry one known defect, so its answer is
/// predicted exactly; <c>spoiled</c>: such a batch with fields removed or retyped; <c>raw</c>: a body that is
/// no envelope at all.
/// </param>
/// <param name="Message">The PushMutations JSON sent (null for raw bodies that hold none).</param>
/// <param name="Expect">The predicted ending, for modelled batches.</param>
/// <param name="Send">Puts it on the queue with the id it is tracked by.</param>
public sealed record RandomInput(string Kind, JsonObject? Message, Expect? Expect, Func<PushInbox, Guid, Task> Send);

[Collection(ServersFixture.Collection)]
public sealed class When_random_input_is_pushed(ServersFixture servers, ITestOutputHelper output)
{
    private const string Target = "fuzz";
    private const int Inputs = 300;

    /// <summary>The generator's seed; set ENGRAM_FUZZ_SEED to try others (the seed is printed either way).</summary>
    private static readonly ulong Seed = ulong.TryParse(Environment.GetEnvironmentVariable("ENGRAM_FUZZ_SEED"), out var seed) ? seed : 20_251_124;

    private static readonly string[] MutationReasons =
    [
        RejectionReasons.UnknownEntity, RejectionReasons.UnknownOp, RejectionReasons.InvalidEntityKey, RejectionReasons.PayloadNotJson,
        RejectionReasons.PayloadTooLarge, RejectionReasons.NonIncreasingLocalSeq, RejectionReasons.Conflict,
    ];

    private static readonly string[] BatchReasons =
        [RejectionReasons.InvalidBatch, RejectionReasons.EmptyBatch, RejectionReasons.BatchTooLarge, RejectionReasons.OutOfOrder];

    [Fact]
    public async Task Each_one_ends_once_with_a_reason_and_every_valid_mutation_lands_once()
    {
        var pcg = new PCG(1, Seed);
        var inputs = Enumerable.Range(0, Inputs).Select(i => InputGen($"fuzz-{i:000}").Generate(pcg, null, out _)).ToList();
        output.WriteLine($"seed {Seed} (ENGRAM_FUZZ_SEED): {inputs.Count} inputs, " +
                         string.Join(", ", inputs.GroupBy(i => i.Kind).Select(g => $"{g.Count()} {g.Key}")));

        await using var world = await PipelineWorld.CreateAsync(servers, "random_input", ingestProcesses: 2);
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var device = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None, seed: 62);
        await using var inbox = await PushInbox.StartAsync(world);

        var recording = Task.Run(() => new EngramWorkload(62, "device-a", [Target], enrollAfter: 0).Journal(device.Engram, 500).Count);
        var ids = inputs.Select(_ => Guid.NewGuid()).ToList();
        await Parallel.ForEachAsync(Enumerable.Range(0, inputs.Count), new ParallelOptions { MaxDegreeOfParallelism = 4 },
            async (i, _) => await inputs[i].Send(inbox, ids[i]));
        var endings = await inbox.WaitForAllAsync(ids, TimeSpan.FromSeconds(60));
        var journaled = await recording;
        await inbox.AssertNothingSkippedAsync();

        // Spoiled inputs may name another target or device, even one that others name too.
        var rows = await CloudRowsAsync(world);
        var failures = new List<string>();
        var answered = new HashSet<string>();
        for (var i = 0; i < inputs.Count; i++)
        {
            var owner = Owner(inputs[i].Message);
            var ownRows = rows.GetValueOrDefault(owner) ?? [];
            if (endings[ids[i]] is Ending.Accepted { Reply: var reply })
            {
                answered.UnionWith(reply.Mappings.Select(m => $"{owner}/{m.LocalSeq}/{m.CloudSeq}"));
            }
            if (Judge(inputs[i], endings[ids[i]], ownRows, shared: inputs.Count(other => Owner(other.Message) == owner) > 1) is { } problem)
            {
                failures.Add($"input {i} ({inputs[i].Kind}): {problem}; sent {Shown(inputs[i].Message)}");
            }
        }
        var stored = rows.SelectMany(r => r.Value.Select(seq => $"{r.Key}/{seq.Key}/{seq.Value}")).ToHashSet();
        failures.AddRange(stored.Except(answered).Select(row => $"a cloud row no answer mapped: {row}"));
        Assert.True(failures.Count == 0, $"seed {Seed}:\n" + string.Join('\n', failures));

        await world.Cluster.WaitUntilSettledAsync(TimeSpan.FromSeconds(60), CancellationToken.None);
        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(journaled);
        var real = await world.MappedAsync();
        Assert.Equal(real, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations WHERE device_id = 'device-a'"));
        var ended = endings.Values.GroupBy(e => e switch
        {
            Ending.Accepted => "answered",
            Ending.Refused { Reply.Reason: var reason } => $"refused {reason}",
            _ => "dead-lettered",
        });
        var rejections = endings.Values.OfType<Ending.Accepted>().SelectMany(a => a.Reply.Rejected).GroupBy(r => r.Reason);
        output.WriteLine($"{inbox.Sent} inputs sent: " + string.Join(", ", ended.OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key}")) +
                         $"; mutations rejected: " + string.Join(", ", rejections.OrderBy(g => g.Key).Select(g => $"{g.Count()} {g.Key}")) +
                         $"; {rows.Values.Sum(r => r.Count)} of their mutations and {real} of a real device landed once each");
    }

    /// <summary>The target and device an input names ("target/device"), as the cloud would store them.</summary>
    private static string Owner(JsonObject? message) =>
        $"{(message?["targetKey"] as JsonValue)?.ToString()}/{(message?["deviceId"] as JsonValue)?.ToString()}";

    /// <summary>
    /// What is wrong with how an input ended, or null. <paramref name="rows"/> are the cloud's rows of the
    /// target and device it names, <paramref name="shared"/> whether other inputs name them too.
    /// </summary>
    private static string? Judge(RandomInput input, Ending ending, IReadOnlyDictionary<long, long> rows, bool shared)
    {
        var generic = ending switch
        {
            Ending.Accepted { Reply: var reply } when input.Message?["mutations"] is not JsonArray =>
                $"accepted, but no mutations were sent: {reply}",
            Ending.Accepted { Reply: var reply } when input.Message!["mutations"]!.AsArray().Count != reply.Mappings.Count + reply.Rejected.Count =>
                "not every mutation was answered once",
            Ending.Accepted { Reply: var reply } when reply.Rejected.Any(r => !MutationReasons.Contains(r.Reason) || string.IsNullOrWhiteSpace(r.Detail)) =>
                "a rejection without a known reason and detail",
            Ending.Accepted { Reply: var reply } when reply.Mappings.Any(m => rows.GetValueOrDefault(m.LocalSeq) != m.CloudSeq)
                || (!shared && reply.Mappings.Count != rows.Count) =>
                "the cloud's rows for the device differ from the mappings",
            Ending.Refused { Reply: var reply } when !BatchReasons.Contains(reply.Reason) || string.IsNullOrWhiteSpace(reply.Detail) =>
                "refused without a known reason and detail",
            Ending.DeadLettered { InService: true } d => $"the service's code failed: {d.ExceptionType} {d.Reason}",
            Ending.Refused or Ending.DeadLettered when !shared && rows.Count > 0 => "not accepted, yet the cloud holds rows of the device",
            _ => null,
        };
        return generic ?? (input.Expect?.Mismatch(ending) is { } mismatch ? $"{mismatch}, got {ending}" : null);
    }

    private static async Task<Dictionary<string, Dictionary<long, long>>> CloudRowsAsync(PipelineWorld world)
    {
        await using var connection = new NpgsqlConnection(world.Cluster.Settings.CloudDb);
        await connection.OpenAsync();
        await using var select = new NpgsqlCommand(
            "SELECT target_key || '/' || device_id, local_seq, cloud_seq FROM cloud_mutations WHERE device_id <> 'device-a'", connection);
        var rows = new Dictionary<string, Dictionary<long, long>>();
        await using var reader = await select.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var device = reader.GetString(0);
            if (!rows.TryGetValue(device, out var seqs))
            {
                rows[device] = seqs = [];
            }
            Assert.True(seqs.TryAdd(reader.GetInt64(1), reader.GetInt64(2)), $"{device} has two rows for local seq {reader.GetInt64(1)}");
        }
        return rows;
    }

    private static string Shown(JsonNode? message)
    {
        var text = message?.ToJsonString() ?? "a raw body";
        return text.Length <= 300 ? text : text[..300] + "…";
    }

    // ---- generators ----

    private static Gen<RandomInput> InputGen(string deviceId) => Gen.Frequency(
        (11, ModelledGen(deviceId).Select(m => new RandomInput("modelled", m.Batch, m.Expect, Send(m.Batch)))),
        (6, ModelledGen(deviceId).SelectMany(m => SpoilGen(m.Batch)).Select(b => new RandomInput("spoiled", b, null, Send(b)))),
        (3, RawGen(deviceId)));

    private static Func<PushInbox, Guid, Task> Send(JsonObject batch) => (inbox, id) => inbox.SendAsync(id, batch);

    /// <summary>A batch of 1–8 mutations, each valid or with one defect whose reason is known; sometimes ahead of the cloud.</summary>
    private static Gen<(JsonObject Batch, Expect Expect)> ModelledGen(string deviceId) =>
        Gen.Select(CellGen.Array[1, 8], Gen.Frequency((9, Gen.Const(0L)), (1, Gen.Long[1, long.MaxValue])), (cells, previous) =>
        {
            var mutations = new List<JsonObject?>();
            var accepted = new List<long>();
            var rejected = new List<(long, string)>();
            var last = 0L;
            var seq = 0L;
            foreach (var (gap, spoil, reason) in cells)
            {
                var mutation = Mutation(0);
                if (reason == RejectionReasons.NonIncreasingLocalSeq)
                {
                    // At or below the last seq that counted; possibly zero or negative.
                    mutation["localSeq"] = last - gap + 1;
                    rejected.Add((last - gap + 1, reason));
                }
                else
                {
                    seq = last = seq + gap;
                    mutation["localSeq"] = seq;
                    spoil(mutation);
                    if (reason is null)
                    {
                        accepted.Add(seq);
                    }
                    else
                    {
                        rejected.Add((seq, reason));
                    }
                }
                mutations.Add(mutation);
            }
            var batch = Batch(deviceId, previous, [.. mutations]).With("targetKey", Target);
            Expect expect = previous > 0 ? new Expect.Refused(RejectionReasons.OutOfOrder) : new Expect.Answered([.. accepted], [.. rejected]);
            return (batch, expect);
        });

    /// <summary>A valid mutation: a known entity and op, a printable key, and JSON of many shapes as payload.</summary>
    private static readonly Gen<(long Gap, Action<JsonObject> Fill)> ValidMutationGen =
        Gen.Select(Gen.Frequency((8, Gen.Long[1, 3]), (1, Gen.Long[1, 1L << 40])),
            Gen.OneOf(WireNames.Entities.ToArray()), Gen.OneOf(WireNames.Ops.ToArray()),
            Gen.Char["abcxyzABC019-_.:/éß漢字"].Array[1, 60].Select(c => "k" + new string(c)),
            JsonGen(3), (gap, entity, op, key, payload) => (gap, (Action<JsonObject>)(m =>
            {
                m["entity"] = entity;
                m["op"] = op;
                m["entityKey"] = key;
                m["payload"] = payload.ToJsonString();
            })));

    /// <summary>A seq gap, how to spoil the mutation, and the reason that must come of it (null: none, it stays valid).</summary>
    private static readonly Gen<(long Gap, Action<JsonObject> Spoil, string? Reason)> CellGen = Gen.Frequency(
        (12, ValidMutationGen.Select(valid => (valid.Gap, valid.Fill, (string?)null))),
        (2, Gen.Select(Gen.Long[1, 3], BadTextGen(["memory", "Observation", "", " session", "obs\0", "événement", "😀"]),
            (gap, entity) => (gap, Set("entity", entity), (string?)RejectionReasons.UnknownEntity))),
        (2, Gen.Select(Gen.Long[1, 3], BadTextGen(["merge", "UPSERT", "", "delete ", "up\u0007sert"]),
            (gap, op) => (gap, Set("op", op), (string?)RejectionReasons.UnknownOp))),
        (2, Gen.Select(Gen.Long[1, 3], Gen.OneOf<JsonNode?>(null, "", "   ", "a\tb", "k\u0001", new string('k', 201), new string('é', 250)),
            (gap, key) => (gap, Set("entityKey", key), (string?)RejectionReasons.InvalidEntityKey))),
        (3, Gen.Select(Gen.Long[1, 3], Gen.OneOf(
                Gen.OneOf<JsonNode?>(null, "", "{", "[1,", "nul", "{'a':1}", "{} []", """{"s":"\u0000"}""", """["\udc00"]""", "[1e-20000]", "\uFEFF{}"),
                Gen.Int[131_072, 10_000_000].Select(e => (JsonNode?)$$"""{"n":1e{{e}}}"""),
                Gen.Char["{[:,\"abc1"].Array[1, 30].Select(c => (JsonNode?)("{" + new string(c)))),
            (gap, payload) => (gap, Set("payload", payload), (string?)RejectionReasons.PayloadNotJson))),
        (1, Gen.Select(Gen.Long[1, 3], Gen.Int[256 * 1024 + 1, 256 * 1024 + 2000],
            (gap, size) => (gap, Set("payload", $$"""{"c":"{{new string('p', size - 8)}}"}"""), (string?)RejectionReasons.PayloadTooLarge))),
        (1, Gen.Long[1, 4].Select(back => (back, (Action<JsonObject>)(_ => { }), (string?)RejectionReasons.NonIncreasingLocalSeq))));

    /// <summary>JSON values jsonb takes: strings with escapes and emoji, numbers near numeric's limits, nesting.</summary>
    private static Gen<JsonNode> JsonGen(int depth)
    {
        var scalar = Gen.OneOf(
            Gen.OneOf("", "plain", "quote \" backslash \\ tab \t", "emoji 😀 and 漢字", "line\nbreak", "\u001f").Select(s => (JsonNode)s),
            Gen.Long.Select(n => (JsonNode)n),
            Gen.Double[-1e300, 1e300].Select(d => (JsonNode)d),
            Gen.OneOf("1e131071", "-1e-16383", "0e999999", "123456789012345678901234567890.5", "true", "false")
                .Select(text => JsonNode.Parse(text)!));
        if (depth == 0)
        {
            return scalar;
        }
        var child = JsonGen(depth - 1);
        return Gen.Frequency(
            (3, scalar),
            (2, child.Array[0, 4].Select(items => (JsonNode)new JsonArray(items))),
            (4, Gen.Select(Gen.Char["abcé_"].Array[1, 8].Select(c => new string(c)), child).Array[0, 5]
                .Select(pairs => (JsonNode)new JsonObject(pairs.DistinctBy(p => p.Item1)
                    .Select(p => KeyValuePair.Create(p.Item1, (JsonNode?)p.Item2))))));
    }

    private static Gen<JsonNode?> BadTextGen(string[] known) => Gen.Frequency(
        (3, Gen.OneOf(known).Select(s => (JsonNode?)s)),
        (1, Gen.Const((JsonNode?)null)),
        (1, Gen.Char['a', 'z'].Array[300, 2000].Select(c => (JsonNode?)new string(c))));

    private static Action<JsonObject> Set(string field, JsonNode? value) => m => m[field] = value?.DeepClone();

    /// <summary>1–3 of: a field removed, retyped or blown up, at the batch or in a mutation; or an unknown field added.</summary>
    private static Gen<JsonObject> SpoilGen(JsonObject batch) =>
        Gen.Select(Gen.Int[0, 9], Gen.OneOf("targetKey", "deviceId", "previousLocalSeq", "mutations", "localSeq", "entity", "op", "entityKey", "payload", "occurredAt", "extra"),
                Gen.Bool, WeirdValueGen)
            .Array[1, 3]
            .Select(spoils =>
            {
                var spoiled = (JsonObject)batch.DeepClone();
                foreach (var (index, field, remove, value) in spoils)
                {
                    var mutations = spoiled["mutations"] as JsonArray;
                    var target = field is "targetKey" or "deviceId" or "previousLocalSeq" or "mutations" || mutations is not { Count: > 0 }
                        ? spoiled
                        : mutations[index % mutations.Count] as JsonObject ?? spoiled;
                    if (remove)
                    {
                        target.Remove(field);
                    }
                    else
                    {
                        target[field] = value?.DeepClone();
                    }
                }
                return spoiled;
            });

    private static readonly Gen<JsonNode?> WeirdValueGen = Gen.OneOf(
        Gen.OneOf<JsonNode?>(null, true, 0, -1, 1.5, "", "x", "2025-13-45T99:00:00Z", "2025-06-01T12:00:00+14:00", new string('w', 70_000)),
        Gen.OneOf("9223372036854775808", "-9223372036854775809", "1e400", "[]", "{}", "[null]", "[1,2]", """[{"localSeq":1}]""", """{"a":{"b":[1]}}""")
            .Select(text => JsonNode.Parse(text)));

    /// <summary>Bodies that are no envelope: random bytes or text, an envelope cut short, or sent with another content type.</summary>
    private static Gen<RandomInput> RawGen(string deviceId)
    {
        var contentTypes = Gen.OneOf(PushInbox.EnvelopeContentType, "application/json", "text/plain", "application/octet-stream", "");
        return Gen.Frequency(
            (2, Gen.Select(Gen.Byte.Array[0, 300], contentTypes, (body, type) => Raw(_ => body, type))),
            (2, Gen.Select(Gen.Char.Array[0, 300], contentTypes, (text, type) => Raw(_ => Encoding.UTF8.GetBytes(new string(text)), type))),
            (2, Gen.Select(ModelledGen(deviceId), Gen.Double[0, 1], (modelled, cut) =>
                Raw(envelope => Encoding.UTF8.GetBytes(envelope(modelled.Batch)[..(int)(cut * (envelope(modelled.Batch).Length - 1))]),
                    PushInbox.EnvelopeContentType))),
            (1, Gen.Select(ModelledGen(deviceId), contentTypes, (modelled, type) =>
                new RandomInput("raw", modelled.Batch, null, (inbox, id) =>
                    inbox.SendRawAsync(id, Encoding.UTF8.GetBytes(inbox.Envelope(id, modelled.Batch)), type)))));
    }

    private static RandomInput Raw(Func<Func<JsonObject, string>, byte[]> body, string contentType) =>
        new("raw", null, null, (inbox, id) => inbox.SendRawAsync(id, body(batch => inbox.Envelope(id, batch)), contentType));
}
