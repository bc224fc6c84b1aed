using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Pull;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_answers_arrive_twice_and_shuffled
{
    [Fact]
    public async Task It_leaves_the_same_device_state_as_answers_applied_once_in_order()
    {
        using var inOrder = TestDevice.Create();
        using var shuffled = TestDevice.Create();
        var seqs = inOrder.RecordObservations(300);
        Assert.Equal(seqs, shuffled.RecordObservations(300));

        // The cloud's answers for six batches of 50; other devices' rows sit between them (gaps).
        var replies = seqs.Chunk(50).Select((chunk, batch) => new PushAccepted
        {
            TargetKey = TestDevice.Project,
            DeviceId = "device-a",
            Mappings = chunk.Take(49).Select((local, i) => new SeqMapping { LocalSeq = local, CloudSeq = batch * 60 + i + 1 }).ToList(),
            Rejected = [TestDevice.Rejection(chunk[^1])],
            Head = batch * 60 + 49,
        }).ToList();

        foreach (var reply in replies)
        {
            await inOrder.ApplyAsync(reply);
        }
        var random = new Random(7);
        foreach (var reply in replies.Concat(replies).OrderBy(_ => random.Next()))
        {
            await shuffled.ApplyAsync(reply);
        }

        Assert.Equal(inOrder.SyncDump(), shuffled.SyncDump());
        Assert.Equal(294, shuffled.Count("SELECT COUNT(*) FROM sync_seq_mapping WHERE target_key = 'cloud:team'"));
        Assert.Equal(6, shuffled.Count("SELECT COUNT(*) FROM sync_mutations WHERE disposition = 'quarantined' AND disposition_reason = 'payload-not-json'"));
        Assert.Equal(49, shuffled.Count("SELECT unified_cursor FROM sync_state WHERE target_key = 'cloud:team'"));
    }

    [Fact]
    public async Task A_mapping_that_contradicts_a_recorded_one_is_refused_and_changes_nothing()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(2);
        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1)));
        var before = device.SyncDump();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => device.ApplyAsync(TestDevice.Reply((seqs[1], 2), (seqs[0], 3))));

        Assert.Contains("disagree", error.Message);
        Assert.Equal(before, device.SyncDump());
    }

    [Fact]
    public async Task An_answer_for_another_device_is_refused()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(1);
        var reply = TestDevice.Reply((seqs[0], 1)) with { DeviceId = "device-b" };

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => device.ApplyAsync(reply));

        Assert.Contains("device-b", error.Message);
        Assert.Equal(0, device.Count("SELECT COUNT(*) FROM sync_seq_mapping"));
        Assert.Equal(1, device.Count("SELECT COUNT(*) FROM sync_mutations WHERE acked_at IS NULL"));
    }
}

public sealed class When_own_cloud_seqs_have_a_gap
{
    private const string Cursor = "SELECT unified_cursor FROM sync_state WHERE target_key = 'cloud:team'";

    [Fact]
    public async Task The_cursor_stops_below_the_first_seq_it_does_not_know()
    {
        using var device = TestDevice.Create();
        var s = device.RecordObservations(4);

        // Cloud seq 3 is another device's mutation, not pulled yet.
        await device.ApplyAsync(TestDevice.Reply((s[0], 1), (s[1], 2), (s[2], 4), (s[3], 5)));

        Assert.Equal(2, device.Count(Cursor));
        Assert.Equal(5, device.Count("SELECT cloud_head FROM pipeline_targets WHERE target_key = 'cloud:team'"));
    }

    [Fact]
    public async Task An_answer_arriving_late_fills_the_gap_and_the_cursor_moves_over_it_and_never_back()
    {
        using var device = TestDevice.Create();
        var s = device.RecordObservations(3);

        await device.ApplyAsync(TestDevice.Reply((s[2], 3)));
        Assert.Equal(0, device.Count(Cursor));
        await device.ApplyAsync(TestDevice.Reply((s[0], 1), (s[1], 2)));
        Assert.Equal(3, device.Count(Cursor));

        // An old answer again: the cursor never moves back.
        await device.ApplyAsync(TestDevice.Reply((s[0], 1)));
        Assert.Equal(3, device.Count(Cursor));
    }

    [Fact]
    public async Task Another_devices_row_pulled_into_the_gap_moves_the_cursor_over_it()
    {
        using var device = TestDevice.Create();
        var s = device.RecordObservations(2);
        await device.ApplyAsync(TestDevice.Reply((s[0], 1), (s[1], 3)));
        Assert.Equal(1, device.Count(Cursor));

        var result = await new PageApplier(device.Database, device.Identity, TimeProvider.System).ApplyAsync(TestDevice.Team, new MutationsPage
        {
            TargetKey = TestDevice.Project,
            Mutations =
            [
                new CloudMutation
                {
                    CloudSeq = 2, DeviceId = "device-b", LocalSeq = 7, Entity = "session", Op = "upsert", EntityKey = "s-b",
                    Payload = """{"id":"s-b","project":"team","ownership_mode":"shared","directory":"/home/b/team"}""",
                    OccurredAt = DateTimeOffset.UnixEpoch,
                },
            ],
            ThroughSeq = 2,
            Head = 3,
        }, CancellationToken.None);

        Assert.Equal(1, result.Applied);
        Assert.Equal(3, device.Count(Cursor));
        Assert.Equal("/home/b/team", device.Text("SELECT directory FROM sessions WHERE id = 's-b'"));
    }
}
