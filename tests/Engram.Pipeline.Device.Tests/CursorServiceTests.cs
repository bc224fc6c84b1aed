using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Monitoring;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_answers_arrive_twice_and_shuffled
{
    [Fact]
    public async Task It_leaves_the_same_device_state_as_answers_applied_once_in_order()
    {
        await using var inOrder = await TestDevice.CreateAsync();
        await using var shuffled = await TestDevice.CreateAsync();
        var seqs = await inOrder.RecordObservationsAsync(300);
        Assert.Equal(seqs, await shuffled.RecordObservationsAsync(300));

        // The cloud's answers for six batches of 50; other devices' rows sit between them (gaps).
        var replies = seqs.Chunk(50).Select((chunk, batch) => new PushAccepted
        {
            TargetKey = "team",
            DeviceId = "device-a",
            Mappings = chunk.Take(49).Select((local, i) => new SeqMapping { LocalSeq = local, CloudSeq = batch * 60 + i + 1 }).ToList(),
            Rejected = [new MutationRejection { LocalSeq = chunk[^1], Reason = "payload-not-json", Detail = "bad" }],
            Head = batch * 60 + 49,
        }).ToList();

        foreach (var reply in replies)
        {
            await inOrder.Cursor.ApplyAcceptedAsync(reply, CancellationToken.None);
        }
        var random = new Random(7);
        foreach (var reply in replies.Concat(replies).OrderBy(_ => random.Next()))
        {
            await shuffled.Cursor.ApplyAcceptedAsync(reply, CancellationToken.None);
        }

        Assert.Equal(await inOrder.DumpAsync(), await shuffled.DumpAsync());
        Assert.Equal(294, await shuffled.ScalarAsync("SELECT COUNT(*) FROM sync_seq_mapping"));
        Assert.Equal(6, await shuffled.ScalarAsync("SELECT COUNT(*) FROM sync_mutations WHERE reject_reason = 'payload-not-json'"));
    }

    [Fact]
    public async Task A_mapping_that_contradicts_a_recorded_one_is_refused()
    {
        await using var device = await TestDevice.CreateAsync();
        var seqs = await device.RecordObservationsAsync(1);
        await device.Cursor.ApplyAcceptedAsync(Reply((seqs[0], 1)), CancellationToken.None);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(
            () => device.Cursor.ApplyAcceptedAsync(Reply((seqs[0], 2)), CancellationToken.None));
        Assert.Contains("disagree", error.Message);
        Assert.Equal(1, await device.ScalarAsync("SELECT cloud_seq FROM sync_seq_mapping"));
    }

    [Fact]
    public async Task An_answer_for_another_device_is_refused()
    {
        await using var device = await TestDevice.CreateAsync();
        var reply = Reply((1, 1)) with { DeviceId = "device-b" };
        await Assert.ThrowsAsync<InvalidOperationException>(() => device.Cursor.ApplyAcceptedAsync(reply, CancellationToken.None));
    }

    internal static PushAccepted Reply(params (long Local, long Cloud)[] mappings) => new()
    {
        TargetKey = "team",
        DeviceId = "device-a",
        Mappings = mappings.Select(m => new SeqMapping { LocalSeq = m.Local, CloudSeq = m.Cloud }).ToList(),
        Rejected = [],
        Head = mappings.Length == 0 ? 0 : mappings.Max(m => m.Cloud),
    };
}

public sealed class When_own_cloud_seqs_have_a_gap
{
    [Fact]
    public async Task The_cursor_stops_below_the_first_seq_it_does_not_know()
    {
        await using var device = await TestDevice.CreateAsync();
        var s = await device.RecordObservationsAsync(4);

        // Cloud seq 3 is another device's mutation, not pulled yet.
        await device.Cursor.ApplyAcceptedAsync(When_answers_arrive_twice_and_shuffled.Reply((s[0], 1), (s[1], 2), (s[2], 4), (s[3], 5)), CancellationToken.None);

        Assert.Equal(2, await device.ScalarAsync("SELECT unified_cursor FROM sync_state"));
        Assert.Equal(5, await device.ScalarAsync("SELECT cloud_head FROM sync_state"));
    }

    [Fact]
    public async Task An_answer_arriving_late_fills_the_gap_and_the_cursor_moves_over_it()
    {
        await using var device = await TestDevice.CreateAsync();
        var s = await device.RecordObservationsAsync(3);

        await device.Cursor.ApplyAcceptedAsync(When_answers_arrive_twice_and_shuffled.Reply((s[2], 3)), CancellationToken.None);
        Assert.Equal(0, await device.ScalarAsync("SELECT unified_cursor FROM sync_state"));
        await device.Cursor.ApplyAcceptedAsync(When_answers_arrive_twice_and_shuffled.Reply((s[0], 1), (s[1], 2)), CancellationToken.None);
        Assert.Equal(3, await device.ScalarAsync("SELECT unified_cursor FROM sync_state"));

        // An old answer again: the cursor never moves back.
        await device.Cursor.ApplyAcceptedAsync(When_answers_arrive_twice_and_shuffled.Reply((s[0], 1)), CancellationToken.None);
        Assert.Equal(3, await device.ScalarAsync("SELECT unified_cursor FROM sync_state"));
    }
}

public sealed class When_health_counts_the_journal
{
    [Fact]
    public async Task Pending_acked_and_rejected_rows_are_each_counted_once()
    {
        await using var device = await TestDevice.CreateAsync();
        var seqs = await device.RecordObservationsAsync(5);
        await device.Cursor.ApplyAcceptedAsync(new PushAccepted
        {
            TargetKey = "team", DeviceId = "device-a", Head = 2,
            Mappings = [new SeqMapping { LocalSeq = seqs[0], CloudSeq = 1 }, new SeqMapping { LocalSeq = seqs[1], CloudSeq = 2 }],
            Rejected = [new MutationRejection { LocalSeq = seqs[2], Reason = "payload-not-json", Detail = "bad" }],
        }, CancellationToken.None);

        var counts = SyncCounts.Read(device.Database, device.Identity.Target);

        Assert.Equal(new SyncCounts(Unsent: 2, InFlight: 0, Acked: 2, Rejected: 1, Pulled: 0, Cursor: 2, Head: 2), counts);
    }
}
