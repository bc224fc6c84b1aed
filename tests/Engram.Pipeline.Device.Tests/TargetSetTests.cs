using Engram.Pipeline.DeviceSync;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_device_target_names_one_project
{
    [Theory]
    [InlineData("team")]
    [InlineData("Team")]
    [InlineData(" TEAM ")]
    public async Task It_is_the_project_as_upstream_normalises_it_and_its_journal_is_read(string configured)
    {
        using var device = TestDevice.Create();
        var seq = device.RecordObservations(1)[0];
        var targets = new TargetSet(device.Database, new DeviceOptions { Target = configured });

        Assert.Equal([TestDevice.Team], await targets.RefreshAsync(CancellationToken.None));

        Assert.True(targets.Syncs(TestDevice.Project));
        var batch = await device.Reader.ReadBatchAsync(targets.Current[0], afterSeq: null, 100, 1 << 20, CancellationToken.None);
        Assert.Equal([seq], batch!.Mutations.Select(m => m.LocalSeq));
    }

    [Fact]
    public async Task Runs_of_dashes_and_underscores_collapse_as_upstream_collapses_them()
    {
        using var device = TestDevice.Create();
        var targets = new TargetSet(device.Database, new DeviceOptions { Target = "My--Team__Notes" });

        Assert.Equal([new SyncTarget("my-team_notes")], await targets.RefreshAsync(CancellationToken.None));
    }
}
