namespace Engram.Pipeline.DeviceSync.Storage;

/// <summary>
/// Upstream Engram's own sync lease, on <c>sync_state('cloud')</c>: its autosync pushes only while it holds the lease,
/// so while the device holds it, Engram never pushes the same journal rows over HTTP. Upstream takes a lease whose
/// <c>lease_until</c> (RFC 3339) has passed, or that names no owner, and renews its own every cycle; the device
/// does the same, every <see cref="RenewEvery"/>, and syncs only while it holds the lease.
/// </summary>
public sealed partial class SyncLease(EngramDatabase database, DeviceIdentity identity, TimeProvider clock, ILogger<SyncLease> log)
{
    /// <summary>How long a taken lease lasts, as upstream's.</summary>
    public static readonly TimeSpan Duration = TimeSpan.FromSeconds(60);

    /// <summary>How often the device renews it, well inside <see cref="Duration"/>.</summary>
    public static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(15);

    private volatile string? _otherHolder;
    private volatile bool _held;
    // UTC ticks of the lease_until the device last wrote; 0 when it holds none.
    private long _heldUntilTicks;

    /// <summary>The owner the device writes, so that upstream and operators can tell who holds the lease.</summary>
    public string Owner { get; } = "engram-pipeline:" + identity.DeviceId;

    /// <summary>
    /// Whether the device holds the lease: it took or renewed it at its last attempt, and the <c>lease_until</c> it
    /// wrote then has not passed. Renewals that keep failing (a busy database) let the lease lapse, and from then on
    /// Engram's autosync may take it and push.
    /// </summary>
    public bool IsHeld => _held && clock.GetUtcNow().UtcTicks < Interlocked.Read(ref _heldUntilTicks);

    /// <summary>Who else held the lease at the device's last attempt, and until when; null when the device holds it.</summary>
    public string? OtherHolder => _otherHolder;

    /// <summary>Takes the lease, or renews it; false while another holder's lease runs.</summary>
    public bool TryAcquire()
    {
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction();
        // Read once the write lock is ours: taking it may have waited on a busy database.
        var now = clock.GetUtcNow();
        using var read = transaction.Command("""
            INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ('cloud', 'idle', datetime('now'));
            SELECT lease_owner, lease_until FROM sync_state WHERE target_key = 'cloud';
            """);
        string? owner, until;
        using (var reader = read.ExecuteReader())
        {
            reader.Read();
            (owner, until) = (reader.IsDBNull(0) ? null : reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1));
        }
        // As upstream: only an owner's lease_until in RFC 3339 and in the future holds; anything else has lapsed.
        if (!string.IsNullOrEmpty(owner) && owner != Owner && EngramTime.ParseRfc3339(until) is { } runsUntil && runsUntil > now)
        {
            transaction.Rollback();
            Observe(held: false, otherHolder: $"{owner} until {until}", heldUntil: default);
            return false;
        }
        // Whole seconds, as upstream writes it: the lease ends at the second written, not a fraction later.
        var leaseUntil = EngramTime.Rfc3339(now + Duration);
        using var take = transaction.Command("""
            UPDATE sync_state SET lease_owner = $owner, lease_until = $until, updated_at = datetime('now') WHERE target_key = 'cloud'
            """, ("$owner", Owner), ("$until", leaseUntil));
        take.ExecuteNonQuery();
        transaction.Commit();
        Observe(held: true, otherHolder: null, heldUntil: EngramTime.ParseRfc3339(leaseUntil)!.Value);
        return true;
    }

    /// <summary>Gives the lease back, if the device still holds it, so that Engram's autosync may sync again.</summary>
    public void Release()
    {
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction();
        using var release = transaction.Command("""
            UPDATE sync_state SET lease_owner = NULL, lease_until = NULL, updated_at = datetime('now')
            WHERE target_key = 'cloud' AND lease_owner = $owner
            """, ("$owner", Owner));
        release.ExecuteNonQuery();
        transaction.Commit();
        _held = false;
        Interlocked.Exchange(ref _heldUntilTicks, 0);
    }

    /// <summary>Holds the lease until <paramref name="stopping"/>, then gives it back.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                try
                {
                    TryAcquire();
                }
                catch (Microsoft.Data.Sqlite.SqliteException e)
                {
                    LogLeaseFailed(e);
                }
                await Task.Delay(IsHeld ? RenewEvery : TimeSpan.FromSeconds(2), clock, stopping)
                    .ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
        finally
        {
            if (_held)
            {
                Release();
            }
        }
    }

    private void Observe(bool held, string? otherHolder, DateTimeOffset heldUntil)
    {
        Interlocked.Exchange(ref _heldUntilTicks, heldUntil.UtcTicks);
        if (held && !_held)
        {
            LogTaken(Owner);
        }
        else if (!held && _otherHolder != otherHolder)
        {
            LogHeldByAnother(otherHolder!);
        }
        _held = held;
        _otherHolder = otherHolder;
    }

    [LoggerMessage(LogLevel.Information, "Holding Engram's sync lease as {Owner}: Engram's own autosync pauses while the pipeline syncs")]
    private partial void LogTaken(string owner);

    [LoggerMessage(LogLevel.Warning,
        "Engram's sync lease is held by {Holder}: waiting for it, and syncing nothing meanwhile (Engram's own autosync is running?)")]
    private partial void LogHeldByAnother(string holder);

    [LoggerMessage(LogLevel.Warning, "Could not take or renew Engram's sync lease; trying again")]
    private partial void LogLeaseFailed(Exception exception);
}
