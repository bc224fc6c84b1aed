using Engram.Pipeline.DeviceSync.Journal;

namespace Engram.Pipeline.Convergence.Tests;

internal static class Edits
{
    public static NewMutation Upsert(string key, string title) =>
        new("observation", "upsert", key, $$"""{"sync_id":"{{key}}","title":"{{title}}"}""");

    public static NewMutation Delete(string key, bool hard) =>
        new("observation", "delete", key, $$"""{"sync_id":"{{key}}","hard_delete":{{(hard ? "true" : "false")}}}""");

    /// <summary>Pushes everything the device has, delivering each batch and its answer at once.</summary>
    public static async Task PushAllAsync(this SyncWorld world, int device)
    {
        while (await world.PushAsync(device, 100))
        {
            while (world.Network.Count > 0)
            {
                await world.DeliverAsync(0);
            }
        }
    }

    public static async Task PullNowAsync(this SyncWorld world, int device)
    {
        await world.PullAsync(device, 100);
        await world.DeliverAsync(world.Network.Count - 1);
    }

    public static async Task AssertConvergedAsync(this SyncWorld world)
    {
        await world.QuiesceAsync();
        var verdicts = await world.CheckAsync(quiescent: true);
        Assert.True(verdicts.All(v => v.Pass), string.Join("\n", verdicts.Select(v => $"{v.Name}: {v.Detail}")));
    }
}

public sealed class When_another_device_commits_between_a_pull_and_a_push
{
    [Fact]
    public async Task Its_mutation_still_reaches_the_device_PR_339s_hole()
    {
        await using var world = new SyncWorld(devices: 2);
        await world.RecordAsync(0, Edits.Upsert("mine", "a"));
        await world.PullNowAsync(0);                       // A is up to date: cursor 0, head 0
        await world.RecordAsync(1, Edits.Upsert("theirs", "b"));
        await world.PushAllAsync(1);                       // B's mutation is cloud seq 1
        await world.PushAllAsync(0);                       // A's is cloud seq 2

        // PR #339 would move A's cursor to 2, the highest seq it pushed, and never pull seq 1.
        Assert.Equal(0, await world.Devices[0].CursorAsync());
        await world.PullNowAsync(0);

        Assert.Equal(2, await world.Devices[0].CursorAsync());
        Assert.Contains("\"b\"", await world.EntityAsync(0, "theirs"));
        await world.AssertConvergedAsync();
    }
}

public sealed class When_a_pull_brings_back_the_devices_own_older_mutation
{
    [Fact]
    public async Task It_is_recognised_not_applied_and_the_newer_unpushed_edit_stays_bug_238()
    {
        await using var world = new SyncWorld(devices: 2);
        await world.RecordAsync(0, Edits.Upsert("k", "old"));
        await world.PushAsync(0, 100);
        await world.DeliverAsync(0);                        // committed as seq 1; the answer is still in flight
        await world.RecordAsync(0, Edits.Upsert("k", "new")); // not pushed

        await world.PullNowAsync(0);                        // the page carries A's own seq 1

        Assert.Contains("\"new\"", await world.EntityAsync(0, "k"));
        Assert.Equal(1, await world.Devices[0].CursorAsync());
        await world.AssertConvergedAsync();
        Assert.Contains("\"new\"", await world.EntityAsync(1, "k"));
    }

    [Fact]
    public async Task An_older_edit_by_another_device_does_not_overwrite_the_newer_unpushed_one()
    {
        await using var world = new SyncWorld(devices: 2);
        await world.RecordAsync(1, Edits.Upsert("k", "theirs"));
        await world.PushAllAsync(1);                        // seq 1
        await world.RecordAsync(0, Edits.Upsert("k", "mine")); // later, not pushed yet

        await world.PullNowAsync(0);

        Assert.Contains("\"mine\"", await world.EntityAsync(0, "k"));
        await world.AssertConvergedAsync();                 // A's edit is seq 2: it wins everywhere
        Assert.Contains("\"mine\"", await world.EntityAsync(1, "k"));
    }
}

public sealed class When_deletes_and_upserts_of_one_entity_cross
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_upsert_after_a_delete_in_cloud_order_wins(bool hard)
    {
        await using var world = new SyncWorld(devices: 3);
        await world.RecordAsync(0, Edits.Upsert("k", "v1"));
        await world.PushAllAsync(0);
        await world.RecordAsync(1, Edits.Delete("k", hard));
        await world.PushAllAsync(1);
        await world.RecordAsync(0, Edits.Upsert("k", "v2"));
        await world.PushAllAsync(0);

        await world.AssertConvergedAsync();
        foreach (var device in new[] { 0, 1, 2 })
        {
            Assert.Equal("""{"sync_id":"k","title":"v2"}""", await world.EntityAsync(device, "k"));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_stale_upsert_never_resurrects_a_later_delete(bool hard)
    {
        await using var world = new SyncWorld(devices: 3);
        await world.RecordAsync(0, Edits.Upsert("k", "v1"));
        await world.PushAllAsync(0);                        // seq 1
        await world.RecordAsync(1, Edits.Delete("k", hard));  // B deletes, not pushed yet
        await world.PullNowAsync(1);                        // the older upsert arrives at B

        Assert.Equal(hard ? null : """deleted:{"sync_id":"k","hard_delete":false}""", await world.EntityAsync(1, "k"));
        await world.PushAllAsync(1);                        // seq 2
        await world.AssertConvergedAsync();
        foreach (var device in new[] { 0, 1, 2 })
        {
            Assert.Equal(hard ? null : """deleted:{"sync_id":"k","hard_delete":false}""", await world.EntityAsync(device, "k"));
        }
    }
}

public sealed class When_the_cloud_rejects_an_edit_the_device_already_applied
{
    [Fact]
    public async Task The_entity_goes_back_to_what_the_rest_of_its_history_makes_it()
    {
        await using var world = new SyncWorld(devices: 2);
        await world.RecordAsync(1, Edits.Upsert("k", "accepted"));
        await world.PushAllAsync(1);
        await world.PullNowAsync(0);
        await world.RecordAsync(0, new NewMutation("observation", "upsert", "k", """{"title":"\u0000"}"""));
        Assert.Contains("u0000", await world.EntityAsync(0, "k"));

        await world.PushAllAsync(0);                        // rejected: payload-not-json

        Assert.Contains("\"accepted\"", await world.EntityAsync(0, "k"));
        await world.AssertConvergedAsync();
    }
}
