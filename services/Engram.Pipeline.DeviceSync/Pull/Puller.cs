using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Hosting;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Pull;

/// <summary>
/// Brings other devices' changes: for each target whose log grew (TargetAdvanced), and for every target each
/// <see cref="PullerOptions.PollInterval"/> as a fallback, it asks <c>engram-pull</c> for pages after the target's
/// unified cursor until it has caught up with the head. It pulls only while the device holds Engram's sync lease.
/// </summary>
public sealed partial class Puller(
    PageApplier applier, EngramDatabase database, DeviceIdentity identity, TargetSet targets, SyncLease lease, DeviceRoutes routes,
    Wakeup signal, PullerOptions options, TimeProvider clock, ILogger<Puller> log)
{
    /// <summary>Retries after a failure, from 1 s up to 30 s apart, with jitter; health reports a run of failures.</summary>
    public Backoff Backoff { get; } = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));

    public async Task RunAsync(IBus bus, CancellationToken stoppingToken)
    {
        var client = bus.CreateRequestClient<PullMutations>(routes.Pull, RequestTimeout.After(s: (int)options.RequestTimeout.TotalSeconds));
        var lastPoll = DateTimeOffset.MinValue;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var poll = clock.GetUtcNow() - lastPoll >= options.PollInterval;
                if (poll)
                {
                    lastPoll = clock.GetUtcNow();
                }
                if (lease.IsHeld)
                {
                    foreach (var target in targets.Current)
                    {
                        if (targets.TakeAdvanced(target.Project) || poll)
                        {
                            await CatchUpAsync(client, target, stoppingToken);
                        }
                    }
                }
                Backoff.Succeeded();
                await signal.WaitAsync(options.PollInterval, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (RequestFaultException e) when (!stoppingToken.IsCancellationRequested)
            {
                // The cloud answered and refused (e.g. not-authorised): asking again at once would be refused again.
                LogPullRefused(e.Fault?.Exceptions.FirstOrDefault()?.Message ?? e.Message);
                await signal.WaitAsync(options.PollInterval, stoppingToken);
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // The broker, the cloud or the database is away; the cursor has not moved, so nothing is skipped.
                // The round that failed may have taken a target's TargetAdvanced: the next try catches up every target,
                // so that it tries again what failed (and the failure stays in health until it works).
                lastPoll = DateTimeOffset.MinValue;
                var delay = Backoff.Failed(e, clock.GetUtcNow());
                LogPullFailed(e, Backoff.Failing!.Attempts, delay);
                // Stopping ends the wait, and the loop.
                await Task.Delay(delay, clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>
    /// Pages until the target's cursor reaches the head the cloud reports. The next page is asked for while this one
    /// applies, so the cloud's read and the page's journey overlap the apply; when this one applies short of its end,
    /// the next no longer starts at the cursor and is dropped for a page asked from the cursor.
    /// </summary>
    public async Task CatchUpAsync(IRequestClient<PullMutations> client, SyncTarget target, CancellationToken ct)
    {
        var cursor = await ReadCursorAsync(target, ct);
        PageRequest? next = Ask(cursor);
        try
        {
            while (true)
            {
                var page = await next.Page;
                await next.DisposeAsync();
                next = page.ThroughSeq < page.Head ? Ask(page.ThroughSeq) : null;
                var result = await applier.ApplyAsync(target, page, ct);
                LogPage(target.Project, cursor, page.Mutations.Count, result.Applied, result.OwnRecognised, result.Cursor, result.Head);
                if (result.Cursor >= result.Head || result.Cursor == cursor)
                {
                    return;
                }
                if (next is null || result.Cursor != page.ThroughSeq)
                {
                    if (next is not null)
                    {
                        await next.DisposeAsync();
                    }
                    next = Ask(result.Cursor);
                }
                cursor = result.Cursor;
            }
        }
        finally
        {
            if (next is not null)
            {
                await next.DisposeAsync();
            }
        }

        PageRequest Ask(long afterSeq) => new(token => RequestAsync(client, target, afterSeq, token), ct);
    }

    /// <summary>Asks for the page after <paramref name="afterSeq"/>, within the request timeout from the send on.</summary>
    private async Task<MutationsPage> RequestAsync(IRequestClient<PullMutations> client, SyncTarget target, long afterSeq, CancellationToken ct)
    {
        // The request timeout counts from the send; a send whose connection dies can wait for the broker's confirm for
        // ever, so the whole request gets the same deadline.
        using var unanswered = new CancellationTokenSource(options.RequestTimeout, clock);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct, unanswered.Token);
        var response = await client.GetResponse<MutationsPage>(new PullMutations
        {
            TargetKey = target.Project, DeviceId = identity.DeviceId, AfterSeq = afterSeq, Limit = options.PageSize,
        }, deadline.Token);
        return response.Message;
    }

    /// <summary>A page asked for; disposing it cancels it if it is still on its way, and waits for it to end.</summary>
    private sealed class PageRequest : IAsyncDisposable
    {
        private readonly CancellationTokenSource _drop;

        public PageRequest(Func<CancellationToken, Task<MutationsPage>> ask, CancellationToken ct)
        {
            _drop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            Page = ask(_drop.Token);
        }

        public Task<MutationsPage> Page { get; }

        public async ValueTask DisposeAsync()
        {
            if (!Page.IsCompleted)
            {
                await _drop.CancelAsync();
            }
            await ((Task)Page).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _drop.Dispose();
        }
    }

    private async Task<long> ReadCursorAsync(SyncTarget target, CancellationToken ct)
    {
        await using var connection = await database.OpenAsync(ct);
        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT unified_cursor FROM sync_state WHERE target_key = $target";
        select.Parameters.AddWithValue("$target", target.Key);
        return await select.ExecuteScalarAsync(ct) as long? ?? 0;
    }

    [LoggerMessage(LogLevel.Debug, "Pulled {Target} after {AfterSeq}: {Rows} rows, {Applied} applied, {Own} own; cursor {Cursor} of head {Head}")]
    private partial void LogPage(string target, long afterSeq, int rows, int applied, int own, long cursor, long head);

    [LoggerMessage(LogLevel.Error, "The cloud refused a pull: {Reason}; asking again at the next poll")]
    private partial void LogPullRefused(string reason);

    [LoggerMessage(LogLevel.Warning, "Pulling failed (attempt {Attempts}); retrying in {Delay}")]
    private partial void LogPullFailed(Exception exception, int attempts, TimeSpan delay);
}
