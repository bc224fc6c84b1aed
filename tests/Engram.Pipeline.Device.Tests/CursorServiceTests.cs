using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Monitoring;
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

public sealed class When_the_cloud_answers_a_push
{
    private const string DatetimeNow = @"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$";

    [Fact]
    public async Task The_row_is_acked_as_upstream_acks_it_and_stays_pending()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(1);
        var before = DateTimeOffset.UtcNow.AddSeconds(-2);

        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1)));

        var ackedAt = device.Text("SELECT acked_at FROM sync_mutations WHERE seq = $seq", ("$seq", seqs[0]))!;
        Assert.Matches(DatetimeNow, ackedAt);
        Assert.InRange(DateTimeOffset.Parse(ackedAt + "Z", System.Globalization.CultureInfo.InvariantCulture), before, DateTimeOffset.UtcNow.AddSeconds(2));
        // Upstream keeps acked rows pending; its backfill counts them as journaled only so.
        Assert.Equal("pending|null|null", device.Rows(
            $"SELECT disposition, disposition_reason, disposition_at FROM sync_mutations WHERE seq = {seqs[0]}").Single());
        Assert.Equal([$"cloud:team|{seqs[0]}|1"], device.Rows("SELECT target_key, local_seq, cloud_seq FROM sync_seq_mapping"));
    }

    [Fact]
    public async Task Sync_state_reads_pending_while_rows_wait_and_healthy_once_all_are_answered()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(3);
        device.Execute("UPDATE sync_state SET consecutive_failures = 2, reason_code = 'transport_failed', last_error = 'away'");

        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1), (seqs[1], 2)));

        Assert.Equal([$"cloud|pending|{seqs[1]}|0|null|null", $"cloud:team|pending|{seqs[1]}|0|null|null"], device.Rows("""
            SELECT target_key, lifecycle, last_acked_seq, consecutive_failures, reason_code, last_error FROM sync_state
            WHERE target_key IN ('cloud', 'cloud:team') ORDER BY target_key
            """));
        Assert.All(device.Rows("SELECT last_success_at FROM sync_state WHERE target_key IN ('cloud', 'cloud:team')"),
            at => Assert.Matches(DatetimeNow, at));

        await device.ApplyAsync(TestDevice.Reply((seqs[2], 3)));

        Assert.Equal([$"cloud|healthy|{seqs[2]}", $"cloud:team|healthy|{seqs[2]}"], device.Rows(
            "SELECT target_key, lifecycle, last_acked_seq FROM sync_state WHERE target_key IN ('cloud', 'cloud:team') ORDER BY target_key"));
        // Engram's own seeded row for its inbox is not the device's.
        Assert.Equal(["cloud:inbox|inbox|0"], device.Rows("SELECT target_key, lifecycle, last_acked_seq FROM sync_state WHERE target_key = 'cloud:inbox'"));
    }

    [Fact]
    public async Task Another_projects_waiting_rows_keep_cloud_pending_but_not_the_project()
    {
        using var device = TestDevice.Create();
        device.Engram.EnrollProject("other");
        device.Engram.CreateSession("s2", "other", "/home/a/other");
        var seqs = device.RecordObservations(1);

        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1)));

        Assert.Equal(["cloud|pending", "cloud:other|pending", "cloud:team|healthy"], device.Rows(
            "SELECT target_key, lifecycle FROM sync_state WHERE target_key <> 'cloud:inbox' ORDER BY target_key"));
    }

    [Fact]
    public async Task A_rejected_row_is_quarantined_with_its_reason_and_recorded_as_answered()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(2);

        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1)) with
        {
            Rejected = [new MutationRejection { LocalSeq = seqs[1], Reason = RejectionReasons.PayloadTooLarge, Detail = "300000 bytes" }],
        });

        Assert.Equal("quarantined|payload-too-large|null", device.Rows(
            $"SELECT disposition, disposition_reason, acked_at FROM sync_mutations WHERE seq = {seqs[1]}").Single());
        Assert.Matches(DatetimeNow, device.Text($"SELECT disposition_at FROM sync_mutations WHERE seq = {seqs[1]}"));
        using (var evidence = JsonDocument.Parse(device.Text($"SELECT disposition_evidence FROM sync_mutations WHERE seq = {seqs[1]}")!))
        {
            Assert.Equal("payload-too-large", evidence.RootElement.GetProperty("reason").GetString());
            Assert.Equal("300000 bytes", evidence.RootElement.GetProperty("detail").GetString());
            Assert.Equal("team", evidence.RootElement.GetProperty("target").GetString());
        }
        Assert.Equal([$"cloud:team|{seqs[1]}|payload-too-large|300000 bytes"],
            device.Rows("SELECT target_key, local_seq, reason, detail FROM pipeline_rejections"));
        Assert.Equal("healthy", device.Text("SELECT lifecycle FROM sync_state WHERE target_key = 'cloud:team'"));
    }

    [Fact]
    public async Task An_ack_of_a_row_engram_removed_still_records_its_mapping()
    {
        using var device = TestDevice.Create();
        // Sent meanwhile; then the session ends, and Engram replaces its unsent upsert.
        var (started, observation, ended) = device.WithdrawnSessionUpsert();

        await device.ApplyAsync(TestDevice.Reply((started, 1), (observation, 2)));

        Assert.Equal([$"{started}|1", $"{observation}|2"], device.Rows("SELECT local_seq, cloud_seq FROM sync_seq_mapping ORDER BY local_seq"));
        Assert.Equal(2, device.Count("SELECT unified_cursor FROM sync_state WHERE target_key = 'cloud:team'"));
        Assert.Equal(1, device.Count($"SELECT COUNT(*) FROM sync_mutations WHERE seq = {ended} AND acked_at IS NULL"));
    }

    [Fact]
    public async Task An_ack_of_an_own_delete_raises_the_tombstone_floor_of_the_target()
    {
        using var device = TestDevice.Create();
        var saved = device.Engram.AddObservation(TestDevice.Session, "discovery", "gone soon", "about to be deleted", TestDevice.Project);
        var deleted = Assert.Single(device.Engram.DeleteObservation(saved.SyncId, hard: true));

        await device.ApplyAsync(TestDevice.Reply((saved.Seqs[0], 4), (deleted, 9)));

        Assert.Equal([$"cloud:team|observation|{saved.SyncId}|9"], device.Rows(
            "SELECT target_key, entity, entity_key, last_mutation_seq FROM sync_delete_tombstone_remote_floors"));
    }

    [Fact]
    public async Task A_refused_batch_degrades_the_project_until_the_next_answer()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(1);

        await device.Cursor.RecordRefusalAsync(new PushRejected
        {
            TargetKey = TestDevice.Project, DeviceId = "device-a", Reason = RejectionReasons.NotAuthorised, Detail = "no push to team",
        }, CancellationToken.None);

        Assert.Equal("degraded|1|policy_forbidden|not-authorised: no push to team", device.Rows(
            "SELECT lifecycle, consecutive_failures, reason_code, reason_message FROM sync_state WHERE target_key = 'cloud:team'").Single());
        Assert.Equal("not-authorised: no push to team", device.Text("SELECT last_refusal FROM pipeline_targets WHERE target_key = 'cloud:team'"));
        Assert.Equal(1, device.Count("SELECT COUNT(*) FROM sync_mutations WHERE acked_at IS NULL AND disposition = 'pending'"));

        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1)));

        Assert.Equal("healthy|0|null", device.Rows(
            "SELECT lifecycle, consecutive_failures, reason_code FROM sync_state WHERE target_key = 'cloud:team'").Single());
    }
}

public sealed class When_a_pull_follows_a_refused_push
{
    private const string ProjectState = """
        SELECT lifecycle, consecutive_failures, reason_code, reason_message, last_success_at IS NOT NULL FROM sync_state WHERE target_key = 'cloud:team'
        """;

    private static MutationsPage Page(long head, params CloudMutation[] rows) => new()
    {
        TargetKey = TestDevice.Project,
        Mutations = rows,
        ThroughSeq = rows.Length == 0 ? 0 : rows[^1].CloudSeq,
        Head = head,
    };

    [Fact]
    public async Task The_refusal_stays_while_the_pull_moves_the_cursor_and_acks_own_rows()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(2);
        var pages = new PageApplier(device.Database, device.Identity, TimeProvider.System);
        await device.Cursor.RecordRefusalAsync(new PushRejected
        {
            TargetKey = TestDevice.Project, DeviceId = "device-a", Reason = RejectionReasons.NotAuthorised, Detail = "no push to team",
        }, CancellationToken.None);
        const string Refused = "degraded|1|policy_forbidden|not-authorised: no push to team|0";
        Assert.Equal(Refused, device.Rows(ProjectState).Single());

        // A page with nothing new still records the head.
        await pages.ApplyAsync(TestDevice.Team, Page(head: 2), CancellationToken.None);

        Assert.Equal(Refused, device.Rows(ProjectState).Single());
        Assert.Equal("not-authorised: no push to team", SyncCounts.Read(device.Database, TestDevice.Team).Refusal);
        Assert.Equal(2, device.Count("SELECT cloud_head FROM pipeline_targets WHERE target_key = 'cloud:team'"));

        // A page bringing back an own row (placed before the refusal) and another device's row.
        await pages.ApplyAsync(TestDevice.Team, Page(head: 2,
            new CloudMutation
            {
                CloudSeq = 1, DeviceId = "device-a", LocalSeq = seqs[0], Entity = "observation", Op = "upsert", EntityKey = "ignored",
                Payload = "{}", OccurredAt = DateTimeOffset.UnixEpoch,
            },
            new CloudMutation
            {
                CloudSeq = 2, DeviceId = "device-b", LocalSeq = 7, Entity = "session", Op = "upsert", EntityKey = "s-b",
                Payload = """{"id":"s-b","project":"team","ownership_mode":"shared","directory":"/home/b/team"}""",
                OccurredAt = DateTimeOffset.UnixEpoch,
            }), CancellationToken.None);

        Assert.Equal(Refused, device.Rows(ProjectState).Single());
        Assert.Equal(2, device.Count("SELECT unified_cursor FROM sync_state WHERE target_key = 'cloud:team'"));
        Assert.Equal([$"{seqs[0]}|1", $"{seqs[1]}|0"], device.Rows("SELECT seq, acked_at IS NOT NULL FROM sync_mutations ORDER BY seq").TakeLast(2));
        Assert.Equal([$"cloud|pending|{seqs[0]}", $"cloud:team|degraded|{seqs[0]}"], device.Rows(
            "SELECT target_key, lifecycle, last_acked_seq FROM sync_state WHERE target_key IN ('cloud', 'cloud:team') ORDER BY target_key"));

        // The next answer to a push is what clears it.
        await device.ApplyAsync(TestDevice.Reply((seqs[1], 3)));

        Assert.Equal("healthy|0|null|null|1", device.Rows(ProjectState).Single());
        Assert.Null(SyncCounts.Read(device.Database, TestDevice.Team).Refusal);
    }

    [Fact]
    public async Task Own_rows_it_brings_back_are_acked_as_a_push_answer_acks_them()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(1);

        await new PageApplier(device.Database, device.Identity, TimeProvider.System).ApplyAsync(TestDevice.Team, Page(head: 1,
            new CloudMutation
            {
                CloudSeq = 1, DeviceId = "device-a", LocalSeq = seqs[0], Entity = "observation", Op = "upsert", EntityKey = "ignored",
                Payload = "{}", OccurredAt = DateTimeOffset.UnixEpoch,
            }), CancellationToken.None);

        Assert.Equal([$"cloud|healthy|{seqs[0]}", $"cloud:team|healthy|{seqs[0]}"], device.Rows(
            "SELECT target_key, lifecycle, last_acked_seq FROM sync_state WHERE target_key IN ('cloud', 'cloud:team') ORDER BY target_key"));
        Assert.Equal(1, device.Count("SELECT COUNT(*) FROM sync_mutations WHERE acked_at IS NOT NULL AND seq = $seq", ("$seq", seqs[0])));
        Assert.Equal(1, device.Count("SELECT unified_cursor FROM sync_state WHERE target_key = 'cloud:team'"));
    }
}

public sealed class When_a_delayed_copy_of_a_batch_meets_a_row_engram_withdrew
{
    private static PushAccepted Conflict(long withdrawn, params (long Local, long Cloud)[] mappings) =>
        TestDevice.Reply(mappings) with { Rejected = [TestDevice.Rejection(withdrawn, RejectionReasons.Conflict)] };

    [Fact]
    public async Task The_conflict_it_answers_for_the_withdrawn_row_is_not_recorded_and_the_chain_goes_on()
    {
        using var device = TestDevice.Create();
        // Batch [started, observation] is sent and delayed; the session ends, and Engram replaces its unsent upsert.
        var (started, observation, ended) = device.WithdrawnSessionUpsert();
        // The resend [observation, ended] (previousLocalSeq 0) is placed and moves the cloud's mark to ended.
        await device.ApplyAsync(TestDevice.Reply((observation, 1), (ended, 2)));

        // Then the delayed copy arrives: the cloud never stored `started` under the mark, and says conflict.
        await device.ApplyAsync(Conflict(started, (observation, 1)));

        Assert.Equal(0, device.Count("SELECT COUNT(*) FROM pipeline_rejections"));
        Assert.Equal("healthy", device.Text("SELECT lifecycle FROM sync_state WHERE target_key = 'cloud:team'"));
        var next = device.RecordObservations(1, title: "later")[0];
        var batch = await device.ReadBatchAsync(afterSeq: null);
        Assert.Equal(ended, batch!.PreviousLocalSeq);
        Assert.Equal([next], batch.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task A_conflict_for_a_row_the_journal_holds_is_recorded_and_quarantined()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(2);

        await device.ApplyAsync(Conflict(seqs[0], (seqs[1], 1)));

        Assert.Equal([$"{seqs[0]}|conflict"], device.Rows("SELECT local_seq, reason FROM pipeline_rejections"));
        Assert.Equal("quarantined|conflict", device.Rows($"SELECT disposition, disposition_reason FROM sync_mutations WHERE seq = {seqs[0]}").Single());
    }

    [Fact]
    public async Task A_conflict_for_a_withdrawn_row_with_a_mapping_is_recorded()
    {
        using var device = TestDevice.Create();
        var started = Assert.Single(device.Engram.CreateSession("s2", TestDevice.Project, "/home/a/team"));
        await device.ApplyAsync(TestDevice.Reply((started, 1)));
        device.Engram.EndSession("s2", "done");
        device.Execute($"DELETE FROM sync_mutations WHERE seq = {started}");

        await device.ApplyAsync(Conflict(started));

        Assert.Equal([$"{started}|conflict"], device.Rows("SELECT local_seq, reason FROM pipeline_rejections"));
    }

    [Fact]
    public async Task Another_rejection_of_a_withdrawn_row_is_still_recorded()
    {
        using var device = TestDevice.Create();
        var started = Assert.Single(device.Engram.CreateSession("s2", TestDevice.Project, "/home/a/team"));
        device.Engram.EndSession("s2", "done");

        await device.ApplyAsync(TestDevice.Reply() with { Rejected = [TestDevice.Rejection(started, RejectionReasons.PayloadTooLarge)] });

        Assert.Equal([$"{started}|payload-too-large"], device.Rows("SELECT local_seq, reason FROM pipeline_rejections"));
    }
}
