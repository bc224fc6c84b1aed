using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_the_device_asks_for_engrams_sync_lease : IDisposable
{
    private const string Autosync = "autosync-1788412345123456789";
    private const string Lease = "SELECT lease_owner, lease_until FROM sync_state WHERE target_key = 'cloud'";

    private readonly TestDevice _device = TestDevice.Create();
    private readonly ManualClock _clock = new(new DateTimeOffset(2026, 9, 3, 5, 6, 18, TimeSpan.Zero));
    private readonly SyncLease _lease;

    public When_the_device_asks_for_engrams_sync_lease() =>
        _lease = new SyncLease(_device.Database, _device.Identity, _clock, NullLogger<SyncLease>.Instance);

    public void Dispose() => _device.Dispose();

    private string? Holder => _device.Rows(Lease).Single();

    private void SetLease(string? owner, string? until) =>
        _device.Execute("UPDATE sync_state SET lease_owner = $owner, lease_until = $until WHERE target_key = 'cloud'", ("$owner", owner), ("$until", until));

    [Fact]
    public void A_free_lease_is_taken_for_sixty_seconds_in_rfc_3339()
    {
        Assert.True(_lease.TryAcquire());

        Assert.Equal("engram-pipeline:device-a|2026-09-03T05:07:18Z", Holder);
        Assert.True(_lease.IsHeld);
        Assert.Null(_lease.OtherHolder);
    }

    [Theory]
    [InlineData(Autosync, "2026-09-03T05:06:17Z")]
    [InlineData(Autosync, "2026-09-03T05:06:18Z")]
    [InlineData(Autosync, "2026-09-03 05:10:00")]
    [InlineData(Autosync, "not a time")]
    [InlineData(Autosync, "2999-09-03T05:06:30.1234567891Z")]
    [InlineData(Autosync, null)]
    [InlineData("", "2026-09-03T05:10:00Z")]
    [InlineData(null, "2026-09-03T05:10:00Z")]
    public void A_lapsed_or_unreadable_or_ownerless_lease_is_taken(string? owner, string? until)
    {
        SetLease(owner, until);

        Assert.True(_lease.TryAcquire());

        Assert.Equal("engram-pipeline:device-a|2026-09-03T05:07:18Z", Holder);
    }

    [Theory]
    [InlineData("2026-09-03T05:06:30Z")]
    [InlineData("2026-09-03T07:06:30+02:00")]
    [InlineData("2026-09-03T05:06:18.5Z")]
    // Go's RFC 3339 reads up to nine fraction digits; .NET's format strings only seven.
    [InlineData("2999-09-03T05:06:30.123456789Z")]
    [InlineData("2026-09-03T07:06:30.12345678+02:00")]
    public void Another_owners_lease_running_into_the_future_is_not_taken(string until)
    {
        SetLease(Autosync, until);

        Assert.False(_lease.TryAcquire());

        Assert.Equal($"{Autosync}|{until}", Holder);
        Assert.False(_lease.IsHeld);
        Assert.Equal($"{Autosync} until {until}", _lease.OtherHolder);
    }

    [Fact]
    public void Another_owners_lease_is_taken_once_it_has_run_out()
    {
        SetLease(Autosync, "2026-09-03T05:06:30Z");
        Assert.False(_lease.TryAcquire());

        _clock.Advance(TimeSpan.FromSeconds(12));

        Assert.True(_lease.TryAcquire());
        Assert.Equal("engram-pipeline:device-a|2026-09-03T05:07:30Z", Holder);
        Assert.Null(_lease.OtherHolder);
    }

    [Fact]
    public void The_holder_renews_its_own_running_lease()
    {
        Assert.True(_lease.TryAcquire());
        _clock.Advance(SyncLease.RenewEvery);

        Assert.True(_lease.TryAcquire());

        Assert.Equal("engram-pipeline:device-a|2026-09-03T05:07:33Z", Holder);
    }

    [Fact]
    public void The_device_stops_counting_as_holder_when_the_lease_it_wrote_runs_out_unrenewed()
    {
        Assert.True(_lease.TryAcquire());

        // Renewals failing (a busy database) leave the lease to lapse; Engram's autosync may take it from then on.
        _clock.Advance(TimeSpan.FromSeconds(59));
        Assert.True(_lease.IsHeld);
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.False(_lease.IsHeld);

        Assert.True(_lease.TryAcquire());
        Assert.True(_lease.IsHeld);
    }

    [Fact]
    public void Holding_ends_at_the_whole_second_written_not_sixty_seconds_after_the_attempt()
    {
        _clock.Advance(TimeSpan.FromMilliseconds(600));
        Assert.True(_lease.TryAcquire());
        Assert.Equal("engram-pipeline:device-a|2026-09-03T05:07:18Z", Holder);

        _clock.Advance(TimeSpan.FromSeconds(59.5));

        Assert.False(_lease.IsHeld);
    }

    [Fact]
    public void Release_gives_the_lease_back()
    {
        Assert.True(_lease.TryAcquire());

        _lease.Release();

        Assert.Equal("null|null", Holder);
        Assert.False(_lease.IsHeld);
        Assert.True(new SyncLease(_device.Database, new DeviceIdentity("device-b"), _clock, NullLogger<SyncLease>.Instance).TryAcquire());
    }

    [Fact]
    public void Release_leaves_another_owners_lease_alone()
    {
        SetLease(Autosync, "2026-09-03T05:06:30Z");

        _lease.Release();

        Assert.Equal($"{Autosync}|2026-09-03T05:06:30Z", Holder);
    }

    [Fact]
    public void Another_device_does_not_take_the_devices_running_lease()
    {
        Assert.True(_lease.TryAcquire());
        var other = new SyncLease(_device.Database, new DeviceIdentity("device-b"), _clock, NullLogger<SyncLease>.Instance);

        Assert.False(other.TryAcquire());

        Assert.Equal("engram-pipeline:device-a until 2026-09-03T05:07:18Z", other.OtherHolder);
    }
}
