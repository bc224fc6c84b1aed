using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.DeviceSync.Pull;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Testing.Engram;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engram.Pipeline.Device.Tests;

/// <summary>
/// A device whose project <c>team</c> has rows in every state: unsent, in flight, acked, rejected, set aside by Engram,
/// of another project; and other devices' rows pulled: applied, deferred (no parent yet) and dead.
/// </summary>
public sealed class When_a_database_has_rows_in_every_state : IAsyncLifetime
{
    private readonly TestDevice _device = TestDevice.Create();

    public async Task InitializeAsync()
    {
        _device.Engram.EnrollProject("other");
        _device.Engram.CreateSession("s2", "other", "/home/a/other");
        var seqs = _device.RecordObservations(8);
        // Cloud seqs 1-3 are device-b's, pulled; 4 and 5 are this device's; 6 is nobody's known yet.
        await new PageApplier(_device.Database, _device.Identity, TimeProvider.System).ApplyAsync(TestDevice.Team, new MutationsPage
        {
            TargetKey = TestDevice.Project,
            Mutations =
            [
                Pulled(1, "session", "s-b", """{"id":"s-b","project":"team","ownership_mode":"shared","directory":"/home/b/team"}"""),
                Pulled(2, "observation", "obs-waits", """
                    {"sync_id":"obs-waits","session_id":"s-missing","type":"discovery","title":"t","content":"c","project":"team","scope":"project","revision_count":1,"duplicate_count":1}
                    """),
                Pulled(3, "session", "s-dead", """{"id":"s-dead","project":"team","ownership_mode":"shared"}"""),
            ],
            ThroughSeq = 3,
            Head = 3,
        }, CancellationToken.None);
        await _device.ApplyAsync(TestDevice.Reply((seqs[0], 4), (seqs[1], 5)) with
        {
            Rejected = [TestDevice.Rejection(seqs[2], RejectionReasons.PayloadTooLarge)],
            Head = 6,
        });
        // seqs 3 and 4 sent and unanswered; 5 and 6 not sent; Engram itself quarantined 7.
        var inFlight = await _device.ReadBatchAsync(null, maxMutations: 2);
        Assert.Equal(seqs[2], inFlight!.PreviousLocalSeq);
        await _device.Reader.MarkSentAsync(inFlight, CancellationToken.None);
        _device.Execute($"UPDATE sync_mutations SET disposition = 'quarantined', disposition_reason = 'upgrade_blocked_legacy_mutation_manual' WHERE seq = {seqs[7]}");
        await _device.Cursor.RecordRefusalAsync(new PushRejected
        {
            TargetKey = TestDevice.Project, DeviceId = "device-a", Reason = RejectionReasons.NotAuthorised, Detail = "no push to team",
        }, CancellationToken.None);
        Assert.True(new SyncLease(_device.Database, _device.Identity, TimeProvider.System, NullLogger<SyncLease>.Instance).TryAcquire());
    }

    public Task DisposeAsync()
    {
        _device.Dispose();
        return Task.CompletedTask;
    }

    private static readonly SyncCounts Expected =
        new(Unsent: 2, InFlight: 2, Acked: 2, Rejected: 1, Pulled: 3, Deferred: 1, Dead: 1, Cursor: 5, Head: 6,
            Refusal: "not-authorised: no push to team");

    [Fact]
    public void Sync_counts_count_each_row_once_in_its_state()
    {
        var counts = SyncCounts.Read(_device.Database, TestDevice.Team);

        Assert.Equal(Expected, counts);
        Assert.Equal(4, counts.Pending);
        Assert.Equal(1, counts.Lag);
    }

    [Fact]
    public void Sync_counts_of_the_other_project_hold_only_its_unsent_row()
    {
        Assert.Equal(new SyncCounts(1, 0, 0, 0, 0, 0, 0, 0, 0), SyncCounts.Read(_device.Database, new SyncTarget("other")));
    }

    [Fact]
    public async Task Status_shows_every_enrolled_project_the_rejections_the_refusal_and_the_lease()
    {
        var statuses = await DeviceStatus.ReadAsync(_device.Path, cloudHead: null, CancellationToken.None);

        Assert.Equal(["other", "team"], statuses.Select(s => s.Project));
        var team = statuses[1];
        Assert.Equal("device-a", team.DeviceId);
        Assert.Equal(Expected, team.Counts);
        Assert.False(team.HeadFromCloud);
        Assert.Equal(new Dictionary<string, long> { [RejectionReasons.PayloadTooLarge] = 1 }, team.RejectedByReason);
        Assert.Equal("not-authorised: no push to team", team.LastRefusal);
        Assert.Matches(@"^engram-pipeline:device-a until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", team.LeaseOwner);
    }

    [Fact]
    public async Task Status_with_the_clouds_head_reports_the_lag_against_it()
    {
        var statuses = await DeviceStatus.ReadAsync(_device.Path, (project, _) => Task.FromResult(project == "team" ? 9L : 0L), CancellationToken.None);

        var team = Assert.Single(statuses, s => s.Project == "team");
        Assert.True(team.HeadFromCloud);
        Assert.Equal(Expected with { Head = 9 }, team.Counts);
        Assert.Equal(4, team.Counts.Lag);
    }

    private static CloudMutation Pulled(long cloudSeq, string entity, string key, string payload) => new()
    {
        CloudSeq = cloudSeq, DeviceId = "device-b", LocalSeq = cloudSeq, Entity = entity, Op = "upsert", EntityKey = key, Payload = payload,
        OccurredAt = DateTimeOffset.UnixEpoch,
    };
}

public sealed class When_no_device_has_attached_yet : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-status-test-");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public async Task Status_lists_engrams_enrolled_projects_with_no_device_and_adds_nothing()
    {
        var path = Path.Combine(_directory.FullName, "engram.db");
        UpstreamEngram.Create(path);
        using (var engram = new Simulation.EngramApp.EngramWriter(path))
        {
            engram.EnrollProject("team");
            engram.CreateSession("s1", "team", "/home/a/team");
        }

        var status = Assert.Single(await DeviceStatus.ReadAsync(path, cloudHead: null, CancellationToken.None));

        Assert.Equal(("team", (string?)null, false), (status.Project, status.DeviceId, status.HeadFromCloud));
        Assert.Equal(0, Upstream.Objects(path).Count(Upstream.IsPipelines));
    }
}
