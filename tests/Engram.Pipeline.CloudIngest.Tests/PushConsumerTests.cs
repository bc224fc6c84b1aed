using Engram.Pipeline.CloudIngest.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Testing;
using static Engram.Pipeline.CloudIngest.Tests.IngestHarness;

namespace Engram.Pipeline.CloudIngest.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_is_pushed(ServersFixture servers)
{
    [Fact]
    public async Task It_gets_consecutive_cloud_seqs_and_the_target_advances()
    {
        await using var ingest = await StartAsync(servers);

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2), Upsert(5))));

        Assert.Equal([(1L, 1L), (2L, 2L), (5L, 3L)], reply.Mappings.Select(m => (m.LocalSeq, m.CloudSeq)));
        Assert.Equal(3, reply.Head);
        Assert.True(await ingest.Harness.Published.Any<TargetAdvanced>(m => m.Context.Message.Head == 3));
        Assert.Equal(5, await ingest.ScalarAsync("SELECT last_local_seq FROM cloud_devices WHERE device_id = 'a'"));
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_is_redelivered(ServersFixture servers)
{
    [Fact]
    public async Task It_gets_the_same_cloud_seqs_and_no_new_rows()
    {
        await using var ingest = await StartAsync(servers);
        var batch = Batch("a", 0, Upsert(1), Upsert(2));
        var first = Assert.IsType<PushAccepted>(await ingest.PushAsync(batch));
        Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("b", 0, Upsert(1))));

        var again = Assert.IsType<PushAccepted>(await ingest.PushAsync(batch));

        Assert.Equal(first.Mappings, again.Mappings);
        Assert.Equal(3, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
        Assert.Equal(3, again.Head);
    }

    [Fact]
    public async Task A_batch_overlapping_the_high_water_mark_adds_only_its_new_rows()
    {
        await using var ingest = await StartAsync(servers);
        await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2)));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2), Upsert(3))));

        Assert.Equal([1L, 2L, 3L], reply.Mappings.Select(m => m.CloudSeq));
        Assert.Equal(3, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

    [Fact]
    public async Task A_duplicate_with_other_content_is_a_conflict_and_nothing_changes()
    {
        await using var ingest = await StartAsync(servers);
        await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"title":"original"}""")));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"title":"cloned"}"""))));

        var rejection = Assert.Single(reply.Rejected);
        Assert.Equal(RejectionReasons.Conflict, rejection.Reason);
        Assert.Empty(reply.Mappings);
        Assert.Equal(1, await ingest.ScalarAsync("""SELECT COUNT(*) FROM cloud_mutations WHERE payload->>'title' = 'original'"""));
    }

    [Fact]
    public async Task Formatting_differences_in_the_payload_are_not_a_conflict()
    {
        await using var ingest = await StartAsync(servers);
        await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"a":1,"b":[true]}""")));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{ "b": [ true ], "a": 1 }"""))));

        Assert.Empty(reply.Rejected);
        Assert.Equal(1, Assert.Single(reply.Mappings).CloudSeq);
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_overtakes_its_predecessor(ServersFixture servers)
{
    [Fact]
    public async Task It_is_refused_with_the_high_water_mark_and_accepted_after_the_predecessor()
    {
        await using var ingest = await StartAsync(servers);
        var early = Batch("a", 2, Upsert(3));

        var refusal = Assert.IsType<PushRejected>(await ingest.PushAsync(early));
        Assert.Equal(RejectionReasons.OutOfOrder, refusal.Reason);
        Assert.Equal(0, refusal.ExpectedPreviousLocalSeq);
        Assert.Equal(0, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));

        await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2)));
        var accepted = Assert.IsType<PushAccepted>(await ingest.PushAsync(early));
        Assert.Equal(3, Assert.Single(accepted.Mappings).CloudSeq);
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_holds_invalid_mutations(ServersFixture servers)
{
    [Fact]
    public async Task Each_is_rejected_with_a_reason_the_rest_is_accepted_and_the_mark_moves_past_them()
    {
        await using var ingest = await StartAsync(servers, new IngestOptions { MaxPayloadBytes = 100 });
        var batch = Batch("a", 0,
            Upsert(1),
            Upsert(2) with { Entity = "memory" },
            Upsert(3) with { Op = "merge" },
            Upsert(4, payload: "{not json"),
            Upsert(5, payload: $$"""{"c":"{{new string('x', 200)}}"}"""),
            Upsert(6, key: ""),
            Upsert(6),
            Upsert(7, payload: """{"s":"\ud800"}"""),
            Upsert(8));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(batch));

        Assert.Equal([(1L, 1L), (8L, 2L)], reply.Mappings.Select(m => (m.LocalSeq, m.CloudSeq)));
        Assert.Equal(
            [RejectionReasons.UnknownEntity, RejectionReasons.UnknownOp, RejectionReasons.PayloadNotJson,
             RejectionReasons.PayloadTooLarge, RejectionReasons.InvalidEntityKey, RejectionReasons.NonIncreasingLocalSeq,
             RejectionReasons.PayloadNotJson],
            reply.Rejected.Select(r => r.Reason));
        Assert.Equal(8, await ingest.ScalarAsync("SELECT last_local_seq FROM cloud_devices"));

        // A resend gets the same answer: the rejections were kept.
        var again = Assert.IsType<PushAccepted>(await ingest.PushAsync(batch));
        Assert.Equal(reply.Mappings, again.Mappings);
        Assert.Equal(reply.Rejected.Select(r => r.Reason).Order(), again.Rejected.Select(r => r.Reason).Order());
    }

    [Theory]
    [InlineData(0, RejectionReasons.EmptyBatch)]
    [InlineData(4, RejectionReasons.BatchTooLarge)]
    public async Task A_batch_that_is_empty_or_over_the_count_limit_is_refused_whole(int count, string reason)
    {
        await using var ingest = await StartAsync(servers, new IngestOptions { MaxBatchMutations = 3 });

        var refusal = Assert.IsType<PushRejected>(await ingest.PushAsync(
            Batch("a", 0, Enumerable.Range(1, count).Select(i => Upsert(i)).ToArray())));

        Assert.Equal(reason, refusal.Reason);
        Assert.Equal(0, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_devices"));
    }

    [Fact]
    public async Task A_batch_without_a_device_id_is_refused_whole()
    {
        await using var ingest = await StartAsync(servers);

        var refusal = Assert.IsType<PushRejected>(await ingest.PushAsync(Batch("", 0, Upsert(1))));

        Assert.Equal(RejectionReasons.InvalidBatch, refusal.Reason);
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_many_devices_push_at_once(ServersFixture servers)
{
    [Fact]
    public async Task Every_target_log_is_one_to_head_and_each_device_keeps_its_order()
    {
        await using var ingest = await StartAsync(servers);
        var targets = new[] { "t1", "t2" };
        var devices = Enumerable.Range(0, 6).Select(i => $"d{i}").ToArray();

        await Task.WhenAll(targets.SelectMany(t => devices.Select(d => Task.Run(async () =>
        {
            for (var b = 0; b < 20; b++)
            {
                var batch = Batch(d, b * 10, Enumerable.Range(b * 10 + 1, 10).Select(i => Upsert(i)).ToArray()) with { TargetKey = t };
                Assert.IsType<PushOutcome.Accepted>(await ingest.Ingestor.IngestAsync(batch, CancellationToken.None));
            }
        }))));

        foreach (var target in targets)
        {
            Assert.Equal(1_200, await ingest.ScalarAsync($"SELECT head FROM cloud_targets WHERE target_key = '{target}'"));
            Assert.Equal(1_200, await ingest.ScalarAsync(
                $"SELECT COUNT(DISTINCT cloud_seq) FROM cloud_mutations WHERE target_key = '{target}' AND cloud_seq BETWEEN 1 AND 1200"));
        }
        Assert.Equal(0, await ingest.ScalarAsync("""
            SELECT COUNT(*) FROM (
                SELECT cloud_seq < LAG(cloud_seq) OVER (PARTITION BY target_key, device_id ORDER BY local_seq) AS inverted
                FROM cloud_mutations) x
            WHERE inverted
            """));
    }
}
