using System.Text;
using System.Text.Json.Nodes;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using Xunit.Abstractions;
using static Engram.Pipeline.Integration.Tests.BadInput.PushJson;

namespace Engram.Pipeline.Integration.Tests.BadInput;

/// <summary>What an input must come to.</summary>
public abstract record Expect
{
    private Expect() { }

    /// <summary>A PushRejected with this reason; nothing written.</summary>
    public sealed record Refused(string Reason) : Expect;

    /// <summary>A PushAccepted mapping exactly these local seqs and rejecting exactly these, with these reasons.</summary>
    public sealed record Answered(long[] Accepted, params (long LocalSeq, string Reason)[] Rejected) : Expect
    {
        public override string ToString() =>
            $"accepted [{string.Join(",", Accepted)}] rejected [{string.Join(", ", Rejected.Select(r => $"{r.LocalSeq} {r.Reason}"))}]";
    }

    /// <summary>
    /// Moved to an <c>_error</c> queue with a reason, unread: the exception came from reading the message
    /// (its type name contains <paramref name="ExceptionType"/> when given), never from the service's code.
    /// </summary>
    public sealed record DeadLettered(string? ExceptionType = null) : Expect;

    /// <summary>How <paramref name="ending"/> differs from this, or null when it is what was expected.</summary>
    public string? Mismatch(Ending ending) => (ending, this) switch
    {
        (Ending.Refused { Reply: var r }, Refused e) when r.Reason == e.Reason && !string.IsNullOrWhiteSpace(r.Detail) => null,
        (Ending.Accepted { Reply: var r }, Answered e)
            when r.Mappings.Select(m => m.LocalSeq).SequenceEqual(e.Accepted)
                 && r.Rejected.Select(x => (x.LocalSeq, x.Reason)).Order().SequenceEqual(e.Rejected.Order())
                 && r.Rejected.All(x => !string.IsNullOrWhiteSpace(x.Detail)) => null,
        (Ending.DeadLettered d, DeadLettered e)
            when !d.InService && d.ExceptionType.Contains(e.ExceptionType ?? "", StringComparison.Ordinal) => null,
        _ => $"expected {this}",
    };
}

/// <summary>One input of a case: how to send it, and what it must come to.</summary>
public sealed record Step(string What, Func<PushInbox, Guid, Task> Send, Expect Expect);

/// <summary>Inputs of one (target, device), sent one after another, each once the one before has ended.</summary>
public sealed record Case(string Name, string Target, string DeviceId, IReadOnlyList<Step> Steps);

[Collection(ServersFixture.Collection)]
public sealed class When_bad_input_is_pushed(ServersFixture servers, ITestOutputHelper output)
{
    private const string Target = "team";
    private const string EnvelopeType = PushInbox.EnvelopeContentType;
    private static readonly Expect Unreadable = new Expect.DeadLettered();
    private static readonly Expect NotConsumed = new Expect.DeadLettered("MessageNotConsumedException");
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Each_input_ends_with_a_reason_and_the_valid_mutations_around_it_land_once()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "bad_input", ingestProcesses: 1);
        await world.Cluster.StartIngestAsync(CancellationToken.None);
        var device = await world.Cluster.StartDeviceAsync("device-a", CancellationToken.None, seed: 61);
        await using var inbox = await PushInbox.StartAsync(world);
        var cases = Table().ToList();

        // A real device keeps journaling while the bad input goes by, on the same target.
        var workload = new EngramWorkload(61, "device-a", [Target], enrollAfter: 0);
        var recording = Task.Run(() => workload.Journal(device.Engram, 1_000).Count);
        var verdicts = await Task.WhenAll(cases.Select(c => RunAsync(inbox, c)));
        var journaled = await recording;
        await inbox.AssertNothingSkippedAsync();
        var failures = verdicts.SelectMany(v => v).ToList();
        Assert.True(failures.Count == 0, string.Join('\n', failures));

        // The service still serves: a new device's batch is accepted, the device's later mutations get through.
        var after = new Case("after", Target, "after-1", [Valid("a valid batch", "after-1")]);
        Assert.Empty(await RunAsync(inbox, after));
        journaled += workload.Journal(device.Engram, 100).Count;
        await world.Cluster.WaitUntilSettledAsync(Deadline, CancellationToken.None);
        var health = await world.Cluster.Ingest[0].Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        Assert.Equal(HealthStatus.Healthy, health.Status);

        await world.AssertInvariantsAsync();
        await world.AssertEveryJournalRowMappedAsync(journaled);
        var real = await world.MappedAsync();
        Assert.Equal(real, await world.CloudScalarAsync("SELECT COUNT(*) FROM cloud_mutations WHERE device_id = 'device-a'"));
        var expectedRows = cases.Append(after)
            .SelectMany(c => c.Steps.Select(s => s.Expect).OfType<Expect.Answered>().SelectMany(a => a.Accepted)
                .Select(seq => $"{c.Target}/{c.DeviceId}/{seq}"))
            .Distinct()
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal(expectedRows, await CloudRowsAsync(world, "device_id <> 'device-a'"));
        output.WriteLine($"{inbox.Sent} inputs in {cases.Count} cases; {real} mutations of a real device and " +
                         $"{expectedRows.Count} valid mutations in the bad batches each landed once");
    }

    /// <summary>Sends a case's steps in order; returns what went differently from what was expected.</summary>
    private async Task<List<string>> RunAsync(PushInbox inbox, Case @case)
    {
        var failures = new List<string>();
        foreach (var step in @case.Steps)
        {
            var id = Guid.NewGuid();
            await step.Send(inbox, id);
            Ending ending;
            try
            {
                ending = await inbox.EndingAsync(id).WaitAsync(Deadline);
            }
            catch (TimeoutException)
            {
                failures.Add($"{@case.Name} / {step.What}: no ending within {Deadline.TotalSeconds:0} s");
                return failures;
            }
            var problem = step.Expect.Mismatch(ending);
            output.WriteLine($"{@case.Name} / {step.What}: {Describe(ending)}{(problem is null ? "" : "  <-- " + problem)}");
            if (problem is not null)
            {
                failures.Add($"{@case.Name} / {step.What}: {problem}");
            }
        }
        return failures;
    }

    private static string Describe(Ending ending) => ending switch
    {
        Ending.Refused { Reply: var r } => $"refused {r.Reason} ({Short(r.Detail)})",
        Ending.Accepted { Reply: var r } => $"accepted [{string.Join(",", r.Mappings.Select(m => m.LocalSeq))}] rejected [" +
            string.Join(", ", r.Rejected.Select(x => $"{x.LocalSeq} {x.Reason} ({Short(x.Detail)})")) + "]",
        Ending.DeadLettered d => $"in {d.Queue}{(d.InService ? " from the service's code" : "")}: {d.ExceptionType} ({Short(d.Reason)})",
        _ => ending.ToString(),
    };

    private static string Short(string text) => text.Length <= 120 ? text : text[..120] + "…";

    private static async Task<List<string>> CloudRowsAsync(PipelineWorld world, string where)
    {
        await using var connection = new NpgsqlConnection(world.Cluster.Settings.CloudDb);
        await connection.OpenAsync();
        await using var select = new NpgsqlCommand(
            $"SELECT target_key || '/' || device_id || '/' || local_seq FROM cloud_mutations WHERE {where}", connection);
        var rows = new List<string>();
        await using var reader = await select.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add(reader.GetString(0));
        }
        return rows.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>The bad inputs, each a case of its own device (cases run side by side).</summary>
    private static IEnumerable<Case> Table()
    {
        var index = 0;
        Case Make(string name, Func<string, Step[]> steps, string target = Target)
        {
            var deviceId = $"bad-{++index:00}";
            return new Case(name, target, deviceId, steps(deviceId));
        }
        var megabyte = new string('k', 1 << 20);

        // Bodies that are not a PushMutations envelope at all.
        yield return Make("not JSON", _ => [Raw("this is not json"u8.ToArray(), EnvelopeType, Unreadable)]);
        yield return Make("empty body", _ => [Raw([], EnvelopeType, Unreadable)]);
        yield return Make("binary, not UTF-8", _ => [Raw([0xff, 0xfe, 0x00, 0x81, 0xc3, 0x28], EnvelopeType, Unreadable)]);
        yield return Make("JSON array", _ => [Raw("[1,2,3]"u8.ToArray(), EnvelopeType, Unreadable)]);
        yield return Make("JSON object, not an envelope", _ => [Raw("""{"hello":"world"}"""u8.ToArray(), EnvelopeType, Unreadable)]);
        yield return Make("truncated envelope", d =>
            [Raw((inbox, id) => Encoding.UTF8.GetBytes(inbox.Envelope(id, Batch(d, 0, Mutation(1)))[..60]), EnvelopeType, Unreadable)]);
        // MassTransit reads a body in its envelope whatever content type it claims.
        yield return Make("valid envelope, content type text/plain", d =>
            [Raw((inbox, id) => Encoding.UTF8.GetBytes(inbox.Envelope(id, Batch(d, 0, Mutation(1)))), "text/plain", Answer([1]))]);
        yield return Make("raw PushMutations JSON without envelope", d =>
            [Raw(Encoding.UTF8.GetBytes(Batch(d, 0, Mutation(1)).ToJsonString()), "application/json", Unreadable)]);

        // Envelopes of the wrong type, or with no message.
        yield return Make("PullMutations on engram-push", d =>
        [
            Send(new JsonObject { ["targetKey"] = Target, ["deviceId"] = d, ["afterSeq"] = 0, ["limit"] = 10 },
                NotConsumed, messageType: nameof(PullMutations)),
        ]);
        yield return Make("PushAccepted on engram-push", d =>
        [
            Send(new JsonObject { ["targetKey"] = Target, ["deviceId"] = d, ["mappings"] = new JsonArray(), ["rejected"] = new JsonArray(), ["head"] = 1 },
                NotConsumed, messageType: nameof(PushAccepted)),
        ]);
        yield return Make("unknown message type", d => [Send(Batch(d, 0, Mutation(1)), NotConsumed, messageType: "NoSuchMessage")]);
        yield return Make("PushMutations on engram-pull", d =>
            [Send(Batch(d, 0, Mutation(1)), NotConsumed, queue: WireNames.PullQueue)]);
        yield return Make("envelope with message null", _ => [Send(null, Unreadable)]);

        // Batch fields missing, null or of the wrong type.
        yield return Make("targetKey missing", d => [Send(Batch(d, 0, Mutation(1)).Without("targetKey"), Unreadable)]);
        yield return Make("targetKey null", d => [Send(Batch(d, 0, Mutation(1)).With("targetKey", null), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("targetKey a number", d => [Send(Batch(d, 0, Mutation(1)).With("targetKey", 7), Unreadable)]);
        yield return Make("deviceId missing", d => [Send(Batch(d, 0, Mutation(1)).Without("deviceId"), Unreadable)]);
        yield return Make("deviceId null", d => [Send(Batch(d, 0, Mutation(1)).With("deviceId", null), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("deviceId empty", d => [Send(Batch(d, 0, Mutation(1)).With("deviceId", ""), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("deviceId of 1 MiB", d => [Send(Batch(d, 0, Mutation(1)).With("deviceId", megabyte), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("deviceId with a control character", d => [Send(Batch(d, 0, Mutation(1)).With("deviceId", d + "\u0007"), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("targetKey of 1 MiB", d => [Send(Batch(d, 0, Mutation(1)).With("targetKey", megabyte), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("targetKey with NUL", d => [Send(Batch(d, 0, Mutation(1)).With("targetKey", "te\0am"), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("previousLocalSeq missing", d => [Send(Batch(d, 0, Mutation(1)).Without("previousLocalSeq"), Unreadable)]);
        yield return Make("previousLocalSeq null", d => [Send(Batch(d, 0, Mutation(1)).With("previousLocalSeq", null), Unreadable)]);
        yield return Make("previousLocalSeq a fraction", d => [Send(Batch(d, 0, Mutation(1)).With("previousLocalSeq", 0.5), Unreadable)]);
        yield return Make("previousLocalSeq beyond long", d => [Send(Batch(d, 0, Mutation(1)).With("previousLocalSeq", JsonNode.Parse("1e30")), Unreadable)]);
        yield return Make("previousLocalSeq negative", d => [Send(Batch(d, -1, Mutation(1)), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("mutations missing", d => [Send(Batch(d, 0).Without("mutations"), Unreadable)]);
        yield return Make("mutations null", d => [Send(Batch(d, 0).With("mutations", null), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("mutations an object", d => [Send(Batch(d, 0).With("mutations", new JsonObject()), Unreadable)]);
        yield return Make("mutations of numbers", d => [Send(Batch(d, 0).With("mutations", new JsonArray(1, 2)), Unreadable)]);
        yield return Make("a null mutation", d => [Send(Batch(d, 0, Mutation(1), null), new Expect.Refused(RejectionReasons.InvalidBatch))]);
        yield return Make("empty batch", d => [Send(Batch(d, 0), new Expect.Refused(RejectionReasons.EmptyBatch))]);
        yield return Make("501 mutations", d =>
            [Send(Batch(d, 0, Enumerable.Range(1, 501).Select(seq => Mutation(seq)).ToArray()), new Expect.Refused(RejectionReasons.BatchTooLarge))]);
        yield return Make("more than 8 MiB of payloads", d =>
        [
            // Over 8 MB: more than the management API takes, so it goes as a device sends it.
            new Step("PushMutations through MassTransit", (inbox, id) => inbox.SendAsync(id, new PushMutations
            {
                TargetKey = Target,
                DeviceId = d,
                PreviousLocalSeq = 0,
                Mutations = Enumerable.Range(1, 33).Select(seq => new Contracts.Mutation
                {
                    LocalSeq = seq, Entity = "observation", Op = "upsert", EntityKey = $"bad-input-{seq}",
                    Payload = Payload(255 * 1024), OccurredAt = DateTimeOffset.UnixEpoch,
                }).ToList(),
            }), new Expect.Refused(RejectionReasons.BatchTooLarge)),
        ]);
        yield return Make("unknown fields besides the known ones", d =>
        [
            Send(Batch(d, 0, Mutation(1).With("colour", "blue"), Mutation(2)).With("priority", 9), new Expect.Answered([1, 2])),
        ]);

        // One bad mutation between two good ones: only it is rejected.
        yield return Sandwich("entity unknown", m => m.With("entity", "memory"), RejectionReasons.UnknownEntity);
        yield return Sandwich("entity null", m => m.With("entity", null), RejectionReasons.UnknownEntity);
        yield return Sandwich("entity with NUL", m => m.With("entity", "obs\0ervation"), RejectionReasons.UnknownEntity);
        yield return Sandwich("op unknown", m => m.With("op", "merge"), RejectionReasons.UnknownOp);
        yield return Sandwich("op null", m => m.With("op", null), RejectionReasons.UnknownOp);
        yield return Sandwich("op with a lone surrogate", m => m.With("op", "upsert\ud800"), RejectionReasons.UnknownOp);
        yield return Sandwich("entityKey empty", m => m.With("entityKey", ""), RejectionReasons.InvalidEntityKey);
        yield return Sandwich("entityKey null", m => m.With("entityKey", null), RejectionReasons.InvalidEntityKey);
        yield return Sandwich("entityKey of 1 MiB", m => m.With("entityKey", megabyte), RejectionReasons.InvalidEntityKey);
        yield return Sandwich("entityKey with a newline", m => m.With("entityKey", "key\nnext"), RejectionReasons.InvalidEntityKey);
        yield return Sandwich("payload not JSON", m => m.With("payload", "{not json"), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload empty", m => m.With("payload", ""), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload null", m => m.With("payload", null), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload two JSON values", m => m.With("payload", "{} {}"), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload with \\u0000", m => m.With("payload", """{"s":"\u0000"}"""), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload with an escaped lone surrogate", m => m.With("payload", """{"s":"\ud800"}"""), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload number beyond PostgreSQL numeric", m => m.With("payload", """{"n":1e999999}"""), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload number with too many decimals", m => m.With("payload", """{"n":1e-16384}"""), RejectionReasons.PayloadNotJson);
        yield return Sandwich("payload over 256 KiB", m => m.With("payload", Payload(256 * 1024 + 1)), RejectionReasons.PayloadTooLarge);
        yield return Sandwich("payload a JSON object, not text", m => m.With("payload", new JsonObject { ["a"] = 1 }), unreadable: true);
        yield return Sandwich("entity missing", m => m.Without("entity"), unreadable: true);
        yield return Sandwich("localSeq a string", m => m.With("localSeq", "two"), unreadable: true);
        yield return Sandwich("occurredAt not a date", m => m.With("occurredAt", "yesterday"), unreadable: true);
        yield return Sandwich("occurredAt null", m => m.With("occurredAt", null), unreadable: true);

        // Local seqs that do not increase; previousLocalSeq ahead of the cloud.
        yield return Make("negative and zero local seqs", d =>
            [Send(Batch(d, 0, Mutation(-5), Mutation(0), Mutation(1)), Answer([1], (-5, RejectionReasons.NonIncreasingLocalSeq), (0, RejectionReasons.NonIncreasingLocalSeq)))]);
        yield return Make("a local seq repeated in the batch", d =>
            [Send(Batch(d, 0, Mutation(1), Mutation(1), Mutation(2)), Answer([1, 2], (1, RejectionReasons.NonIncreasingLocalSeq)))]);
        yield return Make("a local seq going down in the batch", d =>
            [Send(Batch(d, 0, Mutation(3), Mutation(2), Mutation(4)), Answer([3, 4], (2, RejectionReasons.NonIncreasingLocalSeq)))]);
        yield return Make("the largest local seq", d => [Send(Batch(d, 0, Mutation(long.MaxValue)), Answer([long.MaxValue]))]);
        yield return Make("previousLocalSeq from the future", d =>
        [
            Send(Batch(d, 50, Mutation(51)), new Expect.Refused(RejectionReasons.OutOfOrder)),
            Send(Batch(d, long.MaxValue - 1, Mutation(long.MaxValue)), new Expect.Refused(RejectionReasons.OutOfOrder)),
            Send(Batch(d, 0, Mutation(1)), Answer([1])),
        ]);
        yield return Make("local seqs repeated across batches", d =>
        [
            Send(Batch(d, 0, Mutation(1), Mutation(2)), Answer([1, 2])),
            Send(Batch(d, 0, Mutation(1), Mutation(2)), Answer([1, 2])),
            Send(Batch(d, 0, Mutation(1).With("payload", """{"title":"changed"}""")), Answer([], (1, RejectionReasons.Conflict))),
            Send(Batch(d, 2, Mutation(2)), Answer([], (2, RejectionReasons.NonIncreasingLocalSeq))),
            Send(Batch(d, 1, Mutation(2).With("entity", "memory")), Answer([], (2, RejectionReasons.Conflict))),
        ]);
        yield return Make("a seq below the mark that was never pushed", d =>
        [
            Send(Batch(d, 0, Mutation(5)), Answer([5])),
            Send(Batch(d, 3, Mutation(4)), Answer([], (4, RejectionReasons.Conflict))),
            Send(Batch(d, 3, Mutation(4).With("entity", "obs\0")), Answer([], (4, RejectionReasons.Conflict))),
        ]);

        // Targets the cloud has never seen start their own log; unusable target keys are refused.
        yield return Make("a target never seen before", d => [Send(Batch(d, 0, Mutation(1), Mutation(2)).With("targetKey", "never-seen"), Answer([1, 2]))],
            target: "never-seen");
        yield return Make("a target key of spaces", d => [Send(Batch(d, 0, Mutation(1)).With("targetKey", "   "), new Expect.Refused(RejectionReasons.InvalidBatch))]);
    }

    private static Case Sandwich(string name, Func<JsonObject, JsonObject> spoil, string? reason = null, bool unreadable = false)
    {
        // Each sandwich has its own device, named after the case so that the table stays readable.
        var deviceId = "bad-m-" + string.Concat(name.Where(char.IsAsciiLetterOrDigit)).ToLowerInvariant();
        var batch = Batch(deviceId, 0, Mutation(1), spoil(Mutation(2)), Mutation(3));
        var expect = unreadable ? Unreadable : Answer([1, 3], (2, reason!));
        return new Case("mutation: " + name, Target, deviceId, [Send(batch, expect)]);
    }

    private static Step Valid(string what, string deviceId) => Send(Batch(deviceId, 0, Mutation(1)), Answer([1])) with { What = what };

    private static Expect.Answered Answer(long[] accepted, params (long, string)[] rejected) => new(accepted, rejected);

    private static Step Send(JsonNode? message, Expect expect, string messageType = nameof(PushMutations), string queue = WireNames.PushQueue) =>
        new($"{messageType} to {queue}", (inbox, id) => inbox.SendAsync(id, message, messageType, queue), expect);

    private static Step Raw(byte[] body, string contentType, Expect expect) => Raw((_, _) => body, contentType, expect);

    private static Step Raw(Func<PushInbox, Guid, byte[]> body, string contentType, Expect expect) =>
        new($"raw {contentType}", (inbox, id) => inbox.SendRawAsync(id, body(inbox, id), contentType), expect);

    private static string Payload(int bytes) => $$"""{"c":"{{new string('p', bytes - 8)}}"}""";
}
