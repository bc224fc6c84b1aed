using Engram.Pipeline.DeviceSync.Publisher;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_the_publisher_reads_the_journal
{
    [Fact]
    public async Task Batches_follow_each_other_and_respect_the_count_limit()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(5);

        var first = await device.ReadBatchAsync(null, maxMutations: 2);
        var second = await device.ReadBatchAsync(first!.LastSeq, maxMutations: 2);

        Assert.Equal(0, first.PreviousLocalSeq);
        Assert.Equal(seqs.Take(2), first.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(first.LastSeq, second!.PreviousLocalSeq);
        Assert.Equal(seqs.Skip(2).Take(2), second.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(TestDevice.Team, second.Target);
    }

    [Fact]
    public async Task Only_the_projects_pending_rows_for_engrams_cloud_are_read_in_seq_order()
    {
        using var device = TestDevice.Create();
        device.Engram.EnrollProject("other");
        device.Engram.CreateSession("s2", "other", "/home/a/other");
        // Shaped as upstream writes them: every state a journal row can be in, and a foreign target's row.
        device.Execute("""
            INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ('cloud:team', 'idle', datetime('now'));
            INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, occurred_at, acked_at, disposition, project) VALUES
                ('cloud', 'prompt', 'prompt-01', 'upsert', '{}', 'local', '2025-01-31 12:00:00', NULL, 'pending', 'team'),
                ('cloud', 'prompt', 'prompt-02', 'upsert', '{}', 'local', '2025-01-31 12:00:00', NULL, 'pending', 'other'),
                ('cloud:team', 'prompt', 'prompt-03', 'upsert', '{}', 'local', '2025-01-31 12:00:00', NULL, 'pending', 'team'),
                ('cloud', 'prompt', 'prompt-04', 'upsert', '{}', 'local', '2025-01-31 12:00:00', '2025-01-31 12:00:01', 'pending', 'team'),
                ('cloud', 'prompt', 'prompt-05', 'upsert', '{}', 'local', '2025-01-31 12:00:00', NULL, 'quarantined', 'team'),
                ('cloud', 'prompt', 'prompt-06', 'upsert', '{}', 'local', '2025-01-31 12:00:00', NULL, 'superseded', 'team'),
                ('cloud', 'prompt', 'prompt-07', 'delete', '{}', 'remirror:1788412345123456789', '2025-01-31 12:00:02', NULL, 'pending', 'team')
            """);

        var batch = await device.ReadBatchAsync(null);

        Assert.Equal(["prompt-01", "prompt-07"], batch!.Mutations.Select(m => m.EntityKey));
        Assert.True(batch.Mutations[0].LocalSeq < batch.Mutations[1].LocalSeq);
        Assert.Equal(new DateTimeOffset(2025, 1, 31, 12, 0, 0, TimeSpan.Zero), batch.Mutations[0].OccurredAt);
        Assert.Equal("delete", batch.Mutations[1].Op);
    }

    [Fact]
    public async Task Rows_written_by_the_engram_application_are_read_with_its_payloads()
    {
        using var device = TestDevice.Create();

        var saved = device.Engram.AddObservation(TestDevice.Session, "decision", "Use <WAL>", "readers never block the writer", TestDevice.Project);

        var batch = await device.ReadBatchAsync(null);
        var only = Assert.Single(batch!.Mutations);
        Assert.Equal(("observation", "upsert", saved.SyncId, saved.Seqs[0]), (only.Entity, only.Op, only.EntityKey, only.LocalSeq));
        Assert.Equal(device.Text($"SELECT payload FROM sync_mutations WHERE seq = {only.LocalSeq}"), only.Payload);
        Assert.Contains(@"Use \u003cWAL\u003e", only.Payload, StringComparison.Ordinal);
        Assert.InRange(only.OccurredAt, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
    }

    [Fact]
    public async Task A_row_engram_removed_leaves_a_gap_and_the_batches_chain_across_it()
    {
        using var device = TestDevice.Create();
        // A second pending upsert of the session deletes the first.
        var (started, observation, ended) = device.WithdrawnSessionUpsert();

        var first = await device.ReadBatchAsync(null, maxMutations: 1);
        var second = await device.ReadBatchAsync(first!.LastSeq, maxMutations: 1);

        Assert.True(started < observation);
        Assert.Equal(0, first.PreviousLocalSeq);
        Assert.Equal([observation], first.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(observation, second!.PreviousLocalSeq);
        Assert.Equal([ended], second.Mutations.Select(m => m.LocalSeq));
        Assert.Null(await device.ReadBatchAsync(second.LastSeq));
    }

    [Fact]
    public async Task After_a_restart_the_first_batch_follows_the_last_answered_row()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(4);
        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1), (seqs[1], 2)));

        var batch = await device.ReadBatchAsync(null);

        Assert.Equal(seqs[1], batch!.PreviousLocalSeq);
        Assert.Equal(seqs.Skip(2), batch.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task After_a_restart_a_rejected_row_counts_as_answered_but_rows_engram_set_aside_do_not()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(6);
        await device.ApplyAsync(TestDevice.Reply((seqs[0], 1)) with { Rejected = [TestDevice.Rejection(seqs[1])] });
        // Engram's own repair quarantines one row and a local delete supersedes another: neither is ever sent.
        device.Execute($$"""
            UPDATE sync_mutations SET disposition = 'quarantined', disposition_reason = 'upgrade_blocked_legacy_mutation_manual',
                disposition_evidence = '{"check":"sync_mutation_required_fields"}', disposition_at = datetime('now') WHERE seq = {{seqs[2]}};
            UPDATE sync_mutations SET disposition = 'superseded', disposition_reason = 'local_entity_deleted', disposition_at = datetime('now')
            WHERE seq = {{seqs[3]}};
            """);

        var batch = await device.ReadBatchAsync(null);

        Assert.Equal(seqs[1], batch!.PreviousLocalSeq);
        Assert.Equal(seqs.Skip(4), batch.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task After_a_restart_a_row_engram_removed_after_it_was_sent_still_counts_as_answered()
    {
        using var device = TestDevice.Create();
        var started = Assert.Single(device.Engram.CreateSession("s2", TestDevice.Project, "/home/a/team"));
        // Sent; then the session ends before the answer comes, and Engram replaces the unsent upsert.
        var ended = Assert.Single(device.Engram.EndSession("s2", "done"));
        await device.ApplyAsync(TestDevice.Reply((started, 1)));

        var batch = await device.ReadBatchAsync(null);

        Assert.Equal(started, batch!.PreviousLocalSeq);
        Assert.Equal([ended], batch.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task The_byte_limit_splits_batches_but_a_single_oversized_row_still_goes()
    {
        using var device = TestDevice.Create();
        var big = new string('x', 3000);
        var seqs = Enumerable.Range(0, 3)
            .Select(i => device.Engram.AddObservation(TestDevice.Session, "discovery", $"big {i}", big + i, TestDevice.Project).Seqs[0])
            .ToList();
        var sizes = seqs.Select(seq => device.Count($"SELECT length(CAST(payload AS BLOB)) FROM sync_mutations WHERE seq = {seq}")).ToList();

        var alone = await device.ReadBatchAsync(null, maxBytes: 1000);
        var two = await device.ReadBatchAsync(null, maxBytes: (int)(sizes[0] + sizes[1]));
        var rest = await device.ReadBatchAsync(two!.LastSeq, maxBytes: (int)(sizes[0] + sizes[1]));

        Assert.Equal([seqs[0]], alone!.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(seqs.Take(2), two.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(seqs.Skip(2), rest!.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(seqs[1], rest.PreviousLocalSeq);
    }
}

public sealed class When_batches_are_sent
{
    [Fact]
    public async Task The_sent_mark_moves_forward_only_and_rows_stay_pending_until_answered()
    {
        using var device = TestDevice.Create();
        var seqs = device.RecordObservations(5);
        var first = await device.ReadBatchAsync(null, maxMutations: 3);
        var second = await device.ReadBatchAsync(first!.LastSeq, maxMutations: 3);

        await device.Reader.MarkSentAsync(second!, CancellationToken.None);
        await device.Reader.MarkSentAsync(first, CancellationToken.None);

        Assert.Equal(seqs[^1], device.Count("SELECT sent_through FROM pipeline_targets WHERE target_key = 'cloud:team'"));
        Assert.Equal(5, device.Count("SELECT COUNT(*) FROM sync_mutations WHERE acked_at IS NULL AND disposition = 'pending'"));
    }
}

public sealed class When_batches_are_in_flight
{
    private static InFlightWindow.SentBatch Sent(long first, long last, DateTimeOffset at) =>
        new(Guid.NewGuid(), first, last, (int)(last - first + 1), at);

    [Fact]
    public void Refusing_one_batch_drops_it_and_every_batch_chained_after_it()
    {
        var window = new InFlightWindow();
        var now = DateTimeOffset.UtcNow;
        var a = Sent(1, 10, now);
        var b = Sent(11, 20, now);
        window.Add(a);
        window.Add(b);
        window.Add(Sent(21, 30, now));

        window.Resend(b.Id);

        Assert.Equal(1, window.Count);
        Assert.Equal(10, window.LastSeq);
    }

    [Fact]
    public void A_batch_too_large_for_the_cloud_halves_the_limit_and_is_sent_again_with_those_after_it()
    {
        var window = new InFlightWindow();
        var now = DateTimeOffset.UtcNow;
        var a = Sent(1, 100, now);
        var b = Sent(101, 200, now);
        window.Add(a);
        window.Add(b);
        Assert.Null(window.MaxMutations);

        Assert.Equal(50, window.Shrink(a.Id));

        Assert.Equal(0, window.Count);
        Assert.Equal(50, window.MaxMutations);
        Assert.Equal(50, window.Shrink(b.Id));        // refused too, but dropped with a: it goes again under the new limit
        var one = Sent(1, 1, now);
        window.Add(one);
        Assert.Null(window.Shrink(one.Id));           // a batch of one cannot shrink: the refusal stands
        Assert.Equal(50, window.MaxMutations);
        Assert.Equal(1, window.Count);
    }

    [Fact]
    public void An_old_unanswered_batch_expires_the_whole_window()
    {
        var window = new InFlightWindow();
        var now = DateTimeOffset.UtcNow;
        window.Add(Sent(1, 10, now - TimeSpan.FromMinutes(1)));
        window.Add(Sent(11, 20, now));

        Assert.Equal(0, window.ExpireSentBefore(now - TimeSpan.FromMinutes(2)));
        Assert.Equal(2, window.ExpireSentBefore(now - TimeSpan.FromSeconds(30)));
        Assert.Null(window.LastSeq);
    }
}
