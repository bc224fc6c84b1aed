using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Monitoring;

namespace Engram.Pipeline.Convergence.Tests;

/// <summary>The steps the scenarios share, on a <see cref="SyncWorld"/> whose devices all sync <see cref="SyncWorld.Project"/>.</summary>
internal static class Sync
{
    public const string Project = SyncWorld.Project;

    /// <summary>Where an Engram user on <paramref name="device"/> works.</summary>
    public static string Directory(int device) => $"/home/user-{device + 1}/src/{Project}";

    /// <summary>Pushes everything the device has, delivering each batch and its answer at once.</summary>
    public static async Task PushAllAsync(this SyncWorld world, int device)
    {
        while (await world.PushAsync(device, 100))
        {
            await world.DeliverAllAsync();
        }
    }

    /// <summary>Pulls one page of at most <paramref name="limit"/> rows and applies it at once.</summary>
    public static async Task PullNowAsync(this SyncWorld world, int device, int limit = 100)
    {
        await world.PullAsync(device, limit);
        await world.DeliverAsync(world.Network.Count - 1);
    }

    /// <summary>I1–I5 hold now, whatever is still in flight.</summary>
    public static async Task AssertSoundAsync(this SyncWorld world)
    {
        var verdicts = await world.CheckAsync(quiescent: false);
        Assert.True(verdicts.All(v => v.Pass), string.Join("\n", verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}")));
    }

    /// <summary>Runs the world to quiescence; then I1–I6 hold.</summary>
    public static async Task AssertConvergedAsync(this SyncWorld world)
    {
        await world.QuiesceAsync();
        var verdicts = await world.CheckAsync(quiescent: true);
        Assert.True(verdicts.All(v => v.Pass), string.Join("\n", verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}")));
    }

    /// <summary>What each device's Engram search finds for <paramref name="text"/>.</summary>
    public static async Task<List<string>[]> SearchEverywhereAsync(this SyncWorld world, string text) =>
        await Task.WhenAll(world.Devices.Select(d => d.SearchAsync(text)));

    public static async Task<string?[]> ObservationEverywhereAsync(this SyncWorld world, string syncId) =>
        await Task.WhenAll(world.Devices.Select(d => d.ObservationAsync(syncId)));

    /// <summary>A session on <paramref name="device"/> with one observation in it; returns the observation's sync id.</summary>
    public static string Observe(this SyncWorld world, int device, string session, string title, string content)
    {
        world.Engram(device).StartSession(session, Project, Directory(device));
        return world.Engram(device).AddObservation(session, "decision", title, content, Project).SyncId;
    }
}

public sealed class When_a_pull_brings_back_the_devices_own_mutations
{
    [Fact]
    public async Task They_are_recognised_not_applied_again_and_a_newer_unpushed_edit_stays_bug_238()
    {
        await using var world = new SyncWorld(devices: 2);
        var x = world.Observe(0, "s-a", "Cache", "first draft with marmalade");
        await world.PushAsync(0, 100);
        await world.DeliverAsync(0);                         // committed as cloud seqs 1 and 2; the answer is still in flight
        world.Engram(0).UpdateObservation(x, null, "second draft with quokka");   // not pushed

        await world.PullNowAsync(0);                         // the page carries the device's own seqs 1 and 2

        var device = world.Devices[0];
        Assert.Equal("Cache: second draft with quokka", await device.ObservationAsync(x));
        Assert.Equal(1, await device.ObservationRowsAsync(x));
        Assert.Equal(0, await device.CountAsync("SELECT COUNT(*) FROM pipeline_applied"));
        Assert.Equal(new Dictionary<long, long> { [1] = 1, [2] = 2 }, await device.MappingsAsync());
        Assert.Equal(2, await device.CursorAsync());
        Assert.Equal(1, await device.PendingAsync());        // the pull acked what the cloud has; the edit still waits
        Assert.Equal([x], await device.SearchAsync("quokka"));
        Assert.Empty(await device.SearchAsync("marmalade"));

        await world.DeliverAllAsync();                       // the late answer changes nothing
        Assert.Equal("Cache: second draft with quokka", await device.ObservationAsync(x));
        await world.AssertConvergedAsync();
        Assert.All(await world.SearchEverywhereAsync("quokka"), found => Assert.Equal([x], found));
        Assert.All(await world.SearchEverywhereAsync("marmalade"), Assert.Empty);
    }

    [Fact]
    public async Task An_older_edit_by_another_device_does_not_overwrite_the_newer_unpushed_one()
    {
        await using var world = new SyncWorld(devices: 2);
        var x = world.Observe(1, "s-b", "Queue", "made by the second device");
        await world.PushAllAsync(1);
        await world.PullNowAsync(0);
        world.Engram(1).UpdateObservation(x, null, "their edit with wallaby");
        await world.PushAllAsync(1);                         // cloud seq 3
        world.Engram(0).UpdateObservation(x, null, "my edit with dingo");   // later, not pushed yet

        await world.PullNowAsync(0);

        Assert.Equal("Queue: my edit with dingo", await world.Devices[0].ObservationAsync(x));
        Assert.Equal("superseded", await world.Devices[0].ScalarAsync("SELECT outcome FROM pipeline_applied WHERE cloud_seq = 3"));
        await world.AssertConvergedAsync();                  // the device's edit is cloud seq 4: it wins everywhere
        Assert.All(await world.ObservationEverywhereAsync(x), o => Assert.Equal("Queue: my edit with dingo", o));
        Assert.All(await world.SearchEverywhereAsync("wallaby"), Assert.Empty);
    }
}

public sealed class When_another_device_commits_between_a_pull_and_a_push
{
    [Fact]
    public async Task Its_mutations_still_reach_the_device_PR_339s_hole()
    {
        await using var world = new SyncWorld(devices: 2);
        world.Observe(0, "s-a", "Mine", "written on the first device");
        await world.PullNowAsync(0);                         // up to date: cursor 0, head 0
        var theirs = world.Observe(1, "s-b", "Theirs", "written on the second device, about a pangolin");
        await world.PushAllAsync(1);                         // cloud seqs 1 and 2
        await world.PushAllAsync(0);                         // cloud seqs 3 and 4

        // PR #339 would move the cursor to 4, the highest seq the device pushed, and never pull seqs 1 and 2.
        Assert.Equal(0, await world.Devices[0].CursorAsync());
        await world.AssertSoundAsync();
        await world.PullNowAsync(0);

        Assert.Equal(4, await world.Devices[0].CursorAsync());
        Assert.Equal([theirs], await world.Devices[0].SearchAsync("pangolin"));
        await world.AssertConvergedAsync();
    }
}

public sealed class When_a_push_is_retried
{
    [Fact]
    public async Task The_same_batch_delivered_twice_makes_no_second_cloud_row()
    {
        await using var world = new SyncWorld(devices: 2);
        world.Observe(0, "s-a", "Twice", "sent once, delivered twice");
        await world.PushAsync(0, 100);
        world.Network.Add(world.Network[0]);                 // the broker redelivers the batch

        await world.DeliverAsync(0);
        await world.DeliverAsync(0);
        var answers = world.Network.Cast<SyncWorld.Reply>().Select(r => Assert.IsType<PushAccepted>(r.Answer)).ToList();
        await world.DeliverAllAsync();

        Assert.Equal(2, await world.HeadAsync());
        Assert.Equal(2, answers.Count);
        Assert.Equal(answers[0].Mappings.Select(m => (m.LocalSeq, m.CloudSeq)), answers[1].Mappings.Select(m => (m.LocalSeq, m.CloudSeq)));
        Assert.Equal(new Dictionary<long, long> { [1] = 1, [2] = 2 }, await world.Devices[0].MappingsAsync());
        Assert.Equal(0, await world.Devices[0].PendingAsync());
        await world.AssertConvergedAsync();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_lost_answer_and_the_batch_sent_again_make_no_second_cloud_row(bool restart)
    {
        await using var world = new SyncWorld(devices: 2);
        world.Observe(0, "s-a", "Again", "the answer to this one is lost");
        await world.PushAsync(0, 100);
        await world.DeliverAsync(0);                         // committed
        world.Network.Clear();                               // the answer is lost
        Assert.Equal(2, await world.Devices[0].PendingAsync());

        if (restart)
        {
            world.Restart(0);
        }
        else
        {
            world.Devices[0].LastSent = null;                // the publisher's resend timeout
        }
        await world.PushAllAsync(0);

        Assert.Equal(2, await world.HeadAsync());
        Assert.Equal(new Dictionary<long, long> { [1] = 1, [2] = 2 }, await world.Devices[0].MappingsAsync());
        Assert.Equal(0, await world.Devices[0].PendingAsync());
        await world.AssertConvergedAsync();
    }
}

public sealed class When_a_batch_holds_a_corrupt_journal_row
{
    [Fact]
    public async Task The_row_is_quarantined_with_its_reason_the_rest_lands_and_the_next_rows_keep_flowing_issue_459()
    {
        await using var world = new SyncWorld(devices: 2);
        var device = world.Devices[0];
        var first = world.Observe(0, "s-a", "Before", "saved before the corrupt row: aardvark");
        // Another program (or a damaged file) leaves a journal row whose payload is not JSON.
        await device.ExecuteAsync("""
            INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, project)
            VALUES ('cloud', 'observation', 'obs-00000000deadbeef', 'upsert', '{"sync_id":"obs-00000000deadbeef","title":', 'local', $project)
            """, ("$project", Sync.Project));
        var corrupt = (long)(await device.ScalarAsync("SELECT MAX(seq) FROM sync_mutations"))!;
        var second = world.Engram(0).AddObservation("s-a", "decision", "After", "saved after the corrupt row: bandicoot", Sync.Project).SyncId;

        await world.PushAsync(0, 100);                       // one batch of four rows
        Assert.Single(world.Network);
        await world.DeliverAllAsync();

        Assert.Equal(3, await world.HeadAsync());
        Assert.Equal((false, "quarantined", RejectionReasons.PayloadNotJson), await device.JournalRowAsync(corrupt));
        Assert.Equal(RejectionReasons.PayloadNotJson,
            await device.ScalarAsync("SELECT reason FROM pipeline_rejections WHERE local_seq = $seq", ("$seq", corrupt)));
        Assert.Equal(0, await device.PendingAsync());

        var third = world.Engram(0).AddObservation("s-a", "decision", "Later", "saved once the row was rejected: capybara", Sync.Project).SyncId;
        await world.PushAllAsync(0);
        Assert.Equal(4, await world.HeadAsync());
        var status = (await DeviceStatus.ReadAsync(device.Path, null, CancellationToken.None)).Single();
        Assert.Equal(new Dictionary<string, long> { [RejectionReasons.PayloadNotJson] = 1 }, status.RejectedByReason);
        Assert.Equal((0, 1, 4), (status.Counts.Pending, status.Counts.Rejected, status.Counts.Acked));

        await world.AssertConvergedAsync();
        Assert.Equal([first], await world.Devices[1].SearchAsync("aardvark"));
        Assert.Equal([second], await world.Devices[1].SearchAsync("bandicoot"));
        Assert.Equal([third], await world.Devices[1].SearchAsync("capybara"));
    }
}

public sealed class When_engram_withdraws_a_pending_session_upsert
{
    [Fact]
    public async Task A_row_withdrawn_while_in_flight_keeps_its_mapping_and_leaves_no_hole_in_the_chain()
    {
        await using var world = new SyncWorld(devices: 2);
        world.Observe(0, "s-a", "Session", "an observation of a session that ends: wombat");   // seqs 1, 2
        await world.PushAsync(0, 100);                       // in flight
        world.Engram(0).EndSession("s-a", "ended while its first upsert was in flight");         // seq 3 replaces seq 1
        Assert.Null(await world.Devices[0].JournalRowAsync(1));

        await world.DeliverAllAsync();
        await world.PushAllAsync(0);

        Assert.Equal(3, await world.HeadAsync());
        Assert.Equal(new Dictionary<long, long> { [1] = 1, [2] = 2, [3] = 3 }, await world.Devices[0].MappingsAsync());
        Assert.Equal(0, await world.Devices[0].PendingAsync());
        await world.AssertConvergedAsync();
        Assert.Equal("ended while its first upsert was in flight",
            await world.Devices[1].ScalarAsync("SELECT summary FROM sessions WHERE id = 's-a'"));
    }

    [Fact]
    public async Task A_row_withdrawn_before_it_was_sent_leaves_no_hole_and_the_session_still_arrives()
    {
        await using var world = new SyncWorld(devices: 2);
        world.Observe(0, "s-a", "Session", "an observation of a session that ends: wombat");   // seqs 1, 2
        world.Engram(0).EndSession("s-a", "ended before anything was sent");                   // seq 3 replaces seq 1

        await world.PushAsync(0, 100);
        var batch = Assert.IsType<SyncWorld.ToCloud>(Assert.Single(world.Network)).Push;
        await world.DeliverAllAsync();

        Assert.Equal(0, batch.PreviousLocalSeq);
        Assert.Equal([2, 3], batch.Mutations.Select(m => m.LocalSeq));
        Assert.Equal(2, await world.HeadAsync());
        await world.AssertConvergedAsync();
        Assert.Equal("ended before anything was sent", await world.Devices[1].ScalarAsync("SELECT summary FROM sessions WHERE id = 's-a'"));
        Assert.Single(await world.Devices[1].SearchAsync("wombat"));
    }

    [Fact]
    public async Task A_row_withdrawn_after_its_batch_was_lost_is_not_sent_again_and_leaves_no_hole()
    {
        await using var world = new SyncWorld(devices: 2);
        world.Observe(0, "s-a", "Session", "an observation of a session that ends: wombat");   // seqs 1, 2
        await world.PushAsync(0, 100);
        world.Network.Clear();                               // the batch is lost
        world.Engram(0).EndSession("s-a", "ended after its batch was lost");                   // seq 3 replaces seq 1

        world.Devices[0].LastSent = null;                    // the publisher's resend timeout
        await world.PushAllAsync(0);

        Assert.Equal(2, await world.HeadAsync());
        Assert.Equal(new Dictionary<long, long> { [2] = 1, [3] = 2 }, await world.Devices[0].MappingsAsync());
        await world.AssertConvergedAsync();
        Assert.Equal("ended after its batch was lost", await world.Devices[1].ScalarAsync("SELECT summary FROM sessions WHERE id = 's-a'"));
    }
}

public sealed class When_a_child_arrives_before_its_parent
{
    [Theory]
    [InlineData(100)]
    [InlineData(2)]
    public async Task An_observation_and_a_prompt_wait_for_their_session_and_apply_when_it_arrives(int pageSize)
    {
        await using var world = new SyncWorld(devices: 2);
        var observation = world.Observe(0, "s-a", "Parent last", "an observation about a platypus");   // seqs 1, 2
        var prompt = world.Engram(0).AddPrompt("s-a", "how do numbats sleep?", Sync.Project).SyncId;  // seq 3
        world.Engram(0).EndSession("s-a", "the session upsert is journaled last");                   // seq 4 replaces seq 1
        await world.PushAllAsync(0);                         // cloud: observation 1, prompt 2, session 3
        var receiver = world.Devices[1];

        await world.PullNowAsync(1, pageSize);

        if (pageSize == 2)
        {
            // The parent is in the next page: the children wait, and the cursor moves past them.
            Assert.Equal(2, await receiver.CursorAsync());
            Assert.Null(await receiver.ObservationAsync(observation));
            Assert.Equal(2, await receiver.CountAsync("SELECT COUNT(*) FROM sync_apply_deferred WHERE apply_status = 'deferred'"));
            await world.PullNowAsync(1, pageSize);
        }

        Assert.Equal(3, await receiver.CursorAsync());
        Assert.Equal(0, await receiver.CountAsync("SELECT COUNT(*) FROM sync_apply_deferred"));
        Assert.Equal(["applied", "applied", "applied"],
            await receiver.RowsAsync("SELECT outcome FROM pipeline_applied ORDER BY cloud_seq", r => r.GetString(0)));
        Assert.Equal([observation], await receiver.SearchAsync("platypus"));
        Assert.Equal([prompt], await receiver.SearchPromptsAsync("numbats"));
        await world.AssertConvergedAsync();
    }

    [Theory]
    [InlineData(100)]
    [InlineData(3)]
    public async Task A_relation_waits_for_its_endpoints_and_applies_when_they_arrive(int pageSize)
    {
        await using var world = new SyncWorld(devices: 2);
        var engram = world.Engram(0);
        var source = world.Observe(0, "s-a", "New rule", "the newer rule about echidnas");            // seqs 1, 2
        var target = engram.AddObservation("s-a", "decision", "Old rule", "the older rule", Sync.Project).SyncId;   // seq 3
        var relation = engram.JudgeRelation(source, target, "supersedes", "newer", 0.9).SyncId;      // seq 4
        engram.EndSession("s-a", "ended");                                                          // seq 5 replaces seq 1
        await world.PushAllAsync(0);                         // cloud: source 1, target 2, relation 3, session 4
        var receiver = world.Devices[1];

        await world.PullNowAsync(1, pageSize);

        if (pageSize == 3)
        {
            // Both ends wait for their session, and the relation for its ends.
            Assert.Equal(0, await receiver.CountAsync("SELECT COUNT(*) FROM memory_relations"));
            Assert.Equal(3, await receiver.CountAsync("SELECT COUNT(*) FROM sync_apply_deferred WHERE apply_status = 'deferred'"));
            await world.PullNowAsync(1, pageSize);
        }

        Assert.Equal(0, await receiver.CountAsync("SELECT COUNT(*) FROM sync_apply_deferred"));
        Assert.Equal("supersedes judged",
            await receiver.ScalarAsync("SELECT relation || ' ' || judgment_status FROM memory_relations WHERE sync_id = $id", ("$id", relation)));
        Assert.Equal([source], await receiver.SearchAsync("echidnas"));
        await world.AssertConvergedAsync();
    }
}

public sealed class When_a_delete_races_an_edit_across_two_devices
{
    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    public async Task Both_end_as_the_last_in_cloud_order_leaves_it(bool hard, bool deleteFirst)
    {
        await using var world = new SyncWorld(devices: 3);
        var x = world.Observe(0, "s-a", "Race", "the original about an ocelot");
        await world.PushAllAsync(0);
        await world.PullNowAsync(1);
        world.Engram(0).DeleteObservation(x, hard);
        world.Engram(1).UpdateObservation(x, null, "the edit about a narwhal");

        await world.PushAllAsync(deleteFirst ? 0 : 1);
        await world.PushAllAsync(deleteFirst ? 1 : 0);

        await world.AssertConvergedAsync();
        Assert.All(await world.ObservationEverywhereAsync(x), o => Assert.Equal(deleteFirst ? "Race: the edit about a narwhal" : null, o));
        Assert.All(await world.SearchEverywhereAsync("narwhal"), found => Assert.Equal(deleteFirst ? [x] : [], found));
        Assert.All(await world.SearchEverywhereAsync("ocelot"), Assert.Empty);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_stale_upsert_never_resurrects_a_later_delete(bool hard)
    {
        await using var world = new SyncWorld(devices: 3);
        var x = world.Observe(0, "s-a", "Stale", "the original");
        await world.PushAllAsync(0);                         // seqs 1, 2
        await world.PullNowAsync(1);
        world.Engram(0).UpdateObservation(x, null, "the stale edit about a tapir");
        await world.PushAllAsync(0);                         // seq 3
        world.Engram(1).DeleteObservation(x, hard);          // later, not pushed yet

        await world.PullNowAsync(1);                         // the older edit arrives after the delete

        Assert.Null(await world.Devices[1].ObservationAsync(x));
        Assert.Empty(await world.Devices[1].SearchAsync("tapir"));
        await world.PushAllAsync(1);                         // seq 4
        await world.AssertConvergedAsync();
        Assert.All(await world.ObservationEverywhereAsync(x), Assert.Null);
        Assert.All(await world.SearchEverywhereAsync("tapir"), Assert.Empty);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_upsert_waiting_for_its_session_is_not_replayed_over_a_later_delete(bool hard)
    {
        await using var world = new SyncWorld(devices: 2);
        var x = world.Observe(0, "s-a", "Waiting", "deleted before its session arrives: a quoll");   // seqs 1, 2
        world.Engram(0).DeleteObservation(x, hard);                                                 // seq 3
        world.Engram(0).EndSession("s-a", "ended last");                                            // seq 4 replaces seq 1
        await world.PushAllAsync(0);                         // cloud: upsert 1, delete 2, session 3

        await world.PullNowAsync(1, 2);                      // the upsert waits for its session; the delete follows it
        await world.PullNowAsync(1);                         // the session arrives

        Assert.Null(await world.Devices[1].ObservationAsync(x));
        Assert.Empty(await world.Devices[1].SearchAsync("quoll"));
        Assert.Equal(0, await world.Devices[1].CountAsync("SELECT COUNT(*) FROM sync_apply_deferred"));
        await world.AssertConvergedAsync();
        Assert.Equal(hard ? 0 : 1, await world.Devices[1].ObservationRowsAsync(x));
    }

    [Fact]
    public async Task An_edit_that_brings_back_a_hard_deleted_observation_leaves_its_relations_orphaned_on_every_device()
    {
        await using var world = new SyncWorld(devices: 3);
        var source = world.Observe(0, "s-a", "Source", "the source");
        var target = world.Engram(0).AddObservation("s-a", "decision", "Target", "the target", Sync.Project).SyncId;
        var relation = world.Engram(0).JudgeRelation(source, target, "related", "why", 0.8).SyncId;
        await world.PushAllAsync(0);
        await world.PullNowAsync(1);
        world.Engram(0).DeleteObservation(source, hard: true);                  // Engram orphans the relation here
        world.Engram(1).UpdateObservation(source, null, "the source, edited");  // placed after the delete: it wins

        await world.PushAllAsync(0);
        await world.PushAllAsync(1);
        await world.QuiesceAsync();

        // The observation lives everywhere; the relation, placed before the delete, is orphaned everywhere (the
        // deleting device cannot know its status from before, so no device keeps it), including on the editing device.
        Assert.All(await world.ObservationEverywhereAsync(source), o => Assert.Equal("Source: the source, edited", o));
        Assert.All(await Task.WhenAll(world.Devices.Select(d => d.ScalarAsync(
                "SELECT judgment_status FROM memory_relations WHERE sync_id = $id", ("$id", relation)))),
            status => Assert.Equal("orphaned", status));
        await world.AssertConvergedAsync();
    }

    [Fact]
    public async Task A_relation_that_waited_for_an_end_is_orphaned_also_on_the_device_whose_edit_won_over_the_delete()
    {
        await using var world = new SyncWorld(devices: 2);
        var source = world.Observe(0, "s-a", "Source", "the source");                           // cloud: session 1, source 2
        await world.PushAllAsync(0);
        await world.PullNowAsync(1);
        var target = world.Observe(0, "s-b", "Target", "the target in a session still open");
        var relation = world.Engram(0).JudgeRelation(source, target, "related", "why", 0.8).SyncId;
        world.Engram(0).DeleteObservation(source, hard: true);
        world.Engram(0).EndSession("s-b", "the session upsert is journaled last");
        await world.PushAllAsync(0);                         // cloud: target 3, relation 4, hard delete 5, session 6
        world.Engram(1).UpdateObservation(source, null, "the source, edited before the delete arrives");

        await world.PullNowAsync(1, 3);                      // target and relation wait; the delete loses to the own edit
        Assert.Equal(2, await world.Devices[1].CountAsync("SELECT COUNT(*) FROM sync_apply_deferred WHERE apply_status = 'deferred'"));
        await world.PullNowAsync(1);                         // the session arrives: target, then relation, replayed
        await world.PushAllAsync(1);
        await world.QuiesceAsync();

        // The relation was placed before the hard delete: orphaned on the device that applied the delete, and so also
        // on the device that kept the observation, though it took the relation in only after the delete.
        Assert.All(await world.ObservationEverywhereAsync(source), o => Assert.Equal("Source: the source, edited before the delete arrives", o));
        Assert.All(await Task.WhenAll(world.Devices.Select(d => d.ScalarAsync(
                "SELECT judgment_status FROM memory_relations WHERE sync_id = $id", ("$id", relation)))),
            status => Assert.Equal("orphaned", status));
        await world.AssertConvergedAsync();
    }
}

public sealed class When_the_cloud_rejects_an_edit_its_device_already_made
{
    [Fact]
    public async Task The_device_keeps_the_users_write_shows_the_row_rejected_and_the_others_are_unaffected()
    {
        await using var world = new SyncWorld(devices: 3);
        var x = world.Observe(1, "s-b", "Shared", "accepted everywhere: an armadillo");
        await world.PushAllAsync(1);
        await world.PullNowAsync(0);
        // PostgreSQL's jsonb cannot hold U+0000, which Engram journals as \u0000.
        var edit = world.Engram(0).UpdateObservation(x, null, "a pasted gecko \0 and binary").Single();

        await world.PushAllAsync(0);

        var device = world.Devices[0];
        Assert.Equal((false, "quarantined", RejectionReasons.PayloadNotJson), await device.JournalRowAsync(edit));
        Assert.Equal("Shared: a pasted gecko \0 and binary", await device.ObservationAsync(x));
        Assert.Equal([x], await device.SearchAsync("gecko"));
        var status = (await DeviceStatus.ReadAsync(device.Path, null, CancellationToken.None)).Single();
        Assert.Equal(new Dictionary<string, long> { [RejectionReasons.PayloadNotJson] = 1 }, status.RejectedByReason);
        Assert.Equal((0, 1), (status.Counts.Pending, status.Counts.Rejected));

        await world.AssertConvergedAsync();
        Assert.Equal("Shared: a pasted gecko \0 and binary", await device.ObservationAsync(x));
        Assert.Equal("Shared: accepted everywhere: an armadillo", await world.Devices[1].ObservationAsync(x));
        Assert.Equal("Shared: accepted everywhere: an armadillo", await world.Devices[2].ObservationAsync(x));
        Assert.Empty(await world.Devices[1].SearchAsync("gecko"));
        Assert.Empty(await world.Devices[2].SearchAsync("gecko"));
    }

    [Fact]
    public async Task A_later_edit_from_another_device_still_reaches_it()
    {
        await using var world = new SyncWorld(devices: 2);
        var x = world.Observe(1, "s-b", "Shared", "accepted everywhere: an armadillo");
        await world.PushAllAsync(1);
        await world.PullNowAsync(0);
        world.Engram(0).UpdateObservation(x, null, "a pasted gecko \0 and binary");
        await world.PushAllAsync(0);                         // rejected

        world.Engram(1).UpdateObservation(x, null, "a later edit about a bilby");
        await world.PushAllAsync(1);

        await world.AssertConvergedAsync();
        Assert.All(await world.ObservationEverywhereAsync(x), o => Assert.Equal("Shared: a later edit about a bilby", o));
        Assert.All(await world.SearchEverywhereAsync("gecko"), Assert.Empty);
    }
}
