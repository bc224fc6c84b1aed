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
}
