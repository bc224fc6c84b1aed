using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Publisher;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_mutations_are_recorded
{
    [Fact]
    public async Task The_journal_and_the_entities_change_in_one_transaction()
    {
        await using var device = await TestDevice.CreateAsync();
        await device.Journal.RecordAsync(
        [
            new NewMutation("observation", "upsert", "a", """{"sync_id":"a","title":"one"}"""),
            new NewMutation("observation", "upsert", "b", """{"sync_id":"b","title":"two"}"""),
            new NewMutation("observation", "delete", "a", """{"sync_id":"a","hard_delete":false}"""),
            new NewMutation("observation", "delete", "b", """{"sync_id":"b","hard_delete":true}"""),
        ], CancellationToken.None);

        Assert.Equal(4, await device.ScalarAsync("SELECT COUNT(*) FROM sync_mutations WHERE source = 'local'"));
        Assert.Equal(1, await device.ScalarAsync("SELECT deleted FROM entities WHERE entity_key = 'a'"));
        // A soft delete keeps the delete's own payload: what it set does not depend on what this device had seen.
        Assert.Equal(1, await device.ScalarAsync("""SELECT COUNT(*) FROM entities WHERE entity_key = 'a' AND payload LIKE '%"hard_delete":false%'"""));
        Assert.Equal(0, await device.ScalarAsync("SELECT COUNT(*) FROM entities WHERE entity_key = 'b'"));
        Assert.Equal(1, await device.ScalarAsync("SELECT COUNT(*) FROM entities WHERE cloud_seq IS NULL"));
    }

    [Fact]
    public async Task A_bad_mutation_is_refused_and_nothing_of_its_call_is_written()
    {
        await using var device = await TestDevice.CreateAsync();
        var error = await Assert.ThrowsAsync<ArgumentException>(() => device.Journal.RecordAsync(
        [
            new NewMutation("observation", "upsert", "a", "{}"),
            new NewMutation("memory", "upsert", "b", "{}"),
        ], CancellationToken.None));

        Assert.Contains("Unknown entity 'memory'", error.Message);
        Assert.Equal(0, await device.ScalarAsync("SELECT COUNT(*) FROM sync_mutations"));
    }
}

public sealed class When_the_publisher_reads_the_journal
{
    [Fact]
    public async Task Batches_follow_each_other_and_respect_the_count_limit()
    {
        await using var device = await TestDevice.CreateAsync();
        var seqs = await device.RecordObservationsAsync(5);

        var first = await device.Reader.ReadBatchAsync(null, maxMutations: 2, maxBytes: 1 << 20, CancellationToken.None);
        var second = await device.Reader.ReadBatchAsync(first!.LastSeq, 2, 1 << 20, CancellationToken.None);

        Assert.Equal(0, first.PreviousLocalSeq);
        Assert.Equal(seqs.Take(2), first.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(first.LastSeq, second!.PreviousLocalSeq);
        Assert.Equal(seqs.Skip(2).Take(2), second.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task After_a_restart_the_first_batch_follows_the_last_answered_row()
    {
        await using var device = await TestDevice.CreateAsync();
        var seqs = await device.RecordObservationsAsync(4);
        await device.Cursor.ApplyAcceptedAsync(When_answers_arrive_twice_and_shuffled.Reply((seqs[0], 1), (seqs[1], 2)), CancellationToken.None);

        var batch = await device.Reader.ReadBatchAsync(null, 100, 1 << 20, CancellationToken.None);

        Assert.Equal(seqs[1], batch!.PreviousLocalSeq);
        Assert.Equal(seqs.Skip(2), batch.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task The_byte_limit_splits_batches_but_a_single_oversized_row_still_goes()
    {
        await using var device = await TestDevice.CreateAsync();
        var big = new string('x', 3000);
        await device.Journal.RecordAsync(
            Enumerable.Range(0, 3).Select(i => new NewMutation("observation", "upsert", $"k{i}", $$"""{"c":"{{big}}"}""")).ToList(),
            CancellationToken.None);

        var first = await device.Reader.ReadBatchAsync(null, 100, maxBytes: 1000, CancellationToken.None);

        Assert.Single(first!.Mutations);
    }

    [Fact]
    public async Task Rows_written_by_another_process_are_published_too()
    {
        await using var device = await TestDevice.CreateAsync();
        await using (var connection = await device.Database.OpenAsync(CancellationToken.None))
        {
            await using var insert = connection.CreateCommand();
            insert.CommandText = """
                INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, occurred_at)
                VALUES ('team', 'prompt', 'p1', 'upsert', '{}', 'local', '2025-01-31 12:00:00'),
                       ('team', 'prompt', 'p2', 'upsert', '{}', 'remote', '2025-01-31 12:00:00')
                """;
            await insert.ExecuteNonQueryAsync();
        }

        var batch = await device.Reader.ReadBatchAsync(null, 100, 1 << 20, CancellationToken.None);

        var only = Assert.Single(batch!.Mutations);
        Assert.Equal("p1", only.EntityKey);
        Assert.Equal(new DateTimeOffset(2025, 1, 31, 12, 0, 0, TimeSpan.Zero), only.OccurredAt);
    }
}

public sealed class When_a_database_belongs_to_another_device
{
    [Fact]
    public async Task Opening_it_under_a_different_id_fails_with_a_clear_error()
    {
        await using var device = await TestDevice.CreateAsync("device-a");
        var error = Assert.Throws<InvalidOperationException>(() => device.Database.Initialise("device-b", TimeProvider.System));
        Assert.Contains("belongs to device 'device-a'", error.Message);
    }

    [Fact]
    public async Task Opening_it_without_an_id_keeps_the_stored_one()
    {
        await using var device = await TestDevice.CreateAsync("device-a");
        Assert.Equal("device-a", device.Database.Initialise(null, TimeProvider.System));
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

public sealed class When_batches_are_sent
{
    [Fact]
    public async Task The_sent_mark_moves_forward_only_and_rows_stay_pending_until_answered()
    {
        await using var device = await TestDevice.CreateAsync();
        await device.RecordObservationsAsync(5);
        var first = await device.Reader.ReadBatchAsync(null, 3, 1 << 20, CancellationToken.None);
        var second = await device.Reader.ReadBatchAsync(first!.LastSeq, 3, 1 << 20, CancellationToken.None);

        await device.Reader.MarkSentAsync(second!, CancellationToken.None);
        await device.Reader.MarkSentAsync(first, CancellationToken.None);

        Assert.Equal(5, await device.ScalarAsync("SELECT sent_through FROM sync_state WHERE target_key = 'team'"));
        Assert.Equal(5, await device.ScalarAsync("SELECT COUNT(*) FROM sync_mutations WHERE acked_at IS NULL"));
    }

    [Fact]
    public async Task A_database_from_before_the_sent_mark_gets_the_column_and_keeps_its_rows()
    {
        await using var device = await TestDevice.CreateAsync();
        await device.RecordObservationsAsync(2);
        await using (var connection = await device.Database.OpenAsync(CancellationToken.None))
        await using (var drop = connection.CreateCommand())
        {
            drop.CommandText = "INSERT INTO sync_state (target_key) VALUES ('team'); ALTER TABLE sync_state DROP COLUMN sent_through";
            await drop.ExecuteNonQueryAsync();
        }

        Assert.Equal(device.Identity.DeviceId, device.Database.Initialise(device.Identity.DeviceId, TimeProvider.System));
        Assert.Equal(0, await device.ScalarAsync("SELECT sent_through FROM sync_state WHERE target_key = 'team'"));
        Assert.Equal(2, await device.ScalarAsync("SELECT COUNT(*) FROM sync_mutations"));
    }
}
