using Engram.Pipeline.Cloud;
using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using static Engram.Pipeline.CloudIngest.Tests.IngestHarness;

namespace Engram.Pipeline.CloudIngest.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_is_pushed(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task It_gets_consecutive_cloud_seqs_and_the_target_advances(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2), Upsert(5))));

        Assert.Equal([(1L, 1L), (2L, 2L), (5L, 3L)], reply.Mappings.Select(m => (m.LocalSeq, m.CloudSeq)));
        Assert.Equal(3, reply.Head);
        Assert.True(await ingest.Harness.Published.Any<TargetAdvanced>(m => m.Context.Message.Head == 3));
        Assert.Equal(5, await ingest.ScalarAsync("SELECT last_local_seq FROM cloud_devices WHERE device_id = 'a'"));
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_the_broker_refuses_a_publish_after_the_batch_committed(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task The_reply_and_the_event_go_out_on_the_retry_and_nothing_is_dead_lettered(string backend)
    {
        var refused = 0;
        await using var ingest = await StartAsync(servers, backend, bus: cfg => cfg.ConfigurePublish(publish => publish.UseExecute(context =>
        {
            // The broker takes the first TargetAdvanced no more than a channel closing under it would.
            if (context is PublishContext<TargetAdvanced> && Interlocked.Increment(ref refused) == 1)
            {
                throw new ConnectionException("The channel closed before the broker confirmed the publish.");
            }
        })));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2))));

        Assert.Equal([(1L, 1L), (2L, 2L)], reply.Mappings.Select(m => (m.LocalSeq, m.CloudSeq)));
        // The reply may go out before the event fails; the retry sends both again.
        Assert.True(await ingest.Harness.Published.Any<TargetAdvanced>(m => m.Context.Message.Head == 2));
        Assert.Equal(2, refused);
        // The consume was retried, not dead-lettered: no attempt ended faulted.
        Assert.DoesNotContain(ingest.Harness.Consumed.Select<PushMutations>(), m => m.Exception is not null);
        Assert.Equal(2, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_is_redelivered(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task It_gets_the_same_cloud_seqs_and_no_new_rows(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
        var batch = Batch("a", 0, Upsert(1), Upsert(2));
        var first = Assert.IsType<PushAccepted>(await ingest.PushAsync(batch));
        Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("b", 0, Upsert(1))));

        var again = Assert.IsType<PushAccepted>(await ingest.PushAsync(batch));

        Assert.Equal(first.Mappings, again.Mappings);
        Assert.Equal(3, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
        Assert.Equal(3, again.Head);
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task A_batch_overlapping_the_high_water_mark_adds_only_its_new_rows(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
        await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2)));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1), Upsert(2), Upsert(3))));

        Assert.Equal([1L, 2L, 3L], reply.Mappings.Select(m => m.CloudSeq));
        Assert.Equal(3, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task A_duplicate_with_other_content_is_a_conflict_and_nothing_changes(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
        await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"title":"original"}""")));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"title":"cloned"}"""))));

        var rejection = Assert.Single(reply.Rejected);
        Assert.Equal(RejectionReasons.Conflict, rejection.Reason);
        Assert.Empty(reply.Mappings);
        Assert.Equal(1, await ingest.ScalarAsync("""SELECT COUNT(*) FROM cloud_mutations WHERE payload->>'title' = 'original'"""));
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task Formatting_differences_in_the_payload_are_not_a_conflict(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
        await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"a":1,"b":[true]}""")));

        var reply = Assert.IsType<PushAccepted>(await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{ "b": [ true ], "a": 1 }"""))));

        Assert.Empty(reply.Rejected);
        Assert.Equal(1, Assert.Single(reply.Mappings).CloudSeq);
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_a_batch_overtakes_its_predecessor(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task It_is_refused_with_the_high_water_mark_and_accepted_after_the_predecessor(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
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
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task Each_is_rejected_with_a_reason_the_rest_is_accepted_and_the_mark_moves_past_them(string backend)
    {
        await using var ingest = await StartAsync(servers, backend, new IngestOptions { MaxPayloadBytes = 100, AuthoriseDevices = false });
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
    [InlineData(Postgres, 0, RejectionReasons.EmptyBatch)]
    [InlineData(Postgres, 4, RejectionReasons.BatchTooLarge)]
    [InlineData(Sqlite, 0, RejectionReasons.EmptyBatch)]
    [InlineData(Sqlite, 4, RejectionReasons.BatchTooLarge)]
    public async Task A_batch_that_is_empty_or_over_the_count_limit_is_refused_whole(string backend, int count, string reason)
    {
        await using var ingest = await StartAsync(servers, backend, new IngestOptions { MaxBatchMutations = 3, AuthoriseDevices = false });

        var refusal = Assert.IsType<PushRejected>(await ingest.PushAsync(
            Batch("a", 0, Enumerable.Range(1, count).Select(i => Upsert(i)).ToArray())));

        Assert.Equal(reason, refusal.Reason);
        Assert.Equal(0, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_devices"));
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task A_batch_without_a_device_id_is_refused_whole(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);

        var refusal = Assert.IsType<PushRejected>(await ingest.PushAsync(Batch("", 0, Upsert(1))));

        Assert.Equal(RejectionReasons.InvalidBatch, refusal.Reason);
    }
}

[Collection(ServersFixture.Collection)]
public sealed class When_many_devices_push_at_once(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task Every_target_log_is_one_to_head_and_each_device_keeps_its_order(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
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

[Collection(ServersFixture.Collection)]
public sealed class When_a_device_pulls(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task Pages_follow_each_other_without_gaps_and_own_rows_come_without_payload(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
        await ingest.PushAsync(Batch("a", 0, Upsert(1, payload: """{"who":"a"}"""), Upsert(2)));
        await ingest.PushAsync(Batch("b", 0, Upsert(1, payload: """{"who":"b"}"""), Upsert(2), Upsert(3)));

        var first = await ingest.PullAsync("a", afterSeq: 0, limit: 3);
        var second = await ingest.PullAsync("a", afterSeq: first.ThroughSeq, limit: 3);
        var last = await ingest.PullAsync("a", afterSeq: second.ThroughSeq, limit: 3);

        Assert.Equal([1L, 2L, 3L], first.Mutations.Select(m => m.CloudSeq));
        Assert.Equal(3, first.ThroughSeq);
        Assert.Equal([4L, 5L], second.Mutations.Select(m => m.CloudSeq));
        Assert.Equal(5, second.ThroughSeq);
        Assert.Empty(last.Mutations);
        Assert.Equal(5, last.ThroughSeq);
        Assert.Equal(5, last.Head);
        Assert.Equal("", first.Mutations[0].Payload);
        Assert.Equal("a", first.Mutations[0].DeviceId);
        Assert.Contains("\"b\"", first.Mutations[2].Payload);
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task A_reader_never_sees_a_later_seq_before_an_earlier_one_commits(string backend)
    {
        await using var ingest = await StartAsync(servers, backend);
        var store = ingest.Harness.Scope.ServiceProvider.GetRequiredService<Cloud.Storage.ICloudStore>();

        // Device a's transaction takes seqs 1..2 and stays open; device b's must wait for it.
        var a = await store.BeginPushAsync("team", "a", CancellationToken.None);
        await a.AppendAsync([Upsert(1), Upsert(2)], [], 2, DateTimeOffset.UtcNow, CancellationToken.None);
        var b = Task.Run(async () =>
        {
            await using var push = await store.BeginPushAsync("team", "b", CancellationToken.None);
            var (mappings, _) = await push.AppendAsync([Upsert(1)], [], 1, DateTimeOffset.UtcNow, CancellationToken.None);
            await push.CommitAsync(CancellationToken.None);
            return mappings;
        });

        var during = await ingest.PullAsync("c", afterSeq: 0);
        Assert.Empty(during.Mutations);
        Assert.Equal(0, during.ThroughSeq);
        Assert.False(b.IsCompleted);

        await a.CommitAsync(CancellationToken.None);
        await a.DisposeAsync();
        Assert.Equal(3, Assert.Single(await b).CloudSeq);
        var after = await ingest.PullAsync("c", afterSeq: 0);
        Assert.Equal([1L, 2L, 3L], after.Mutations.Select(m => m.CloudSeq));
    }
}
