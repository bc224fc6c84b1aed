using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Hosting;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Publisher;

/// <summary>
/// Ships Engram's journal to <c>engram-push</c> (through <see cref="DeviceRoutes.Push"/>), each synced project to its
/// own target: pending rows in seq order, in batches, several in flight per target. It notices rows the Engram
/// application writes by polling every <see cref="PublisherOptions.PollInterval"/>, and sends only while the device
/// holds Engram's sync lease. The journal is the only durable state: after a restart, or when a batch goes
/// unanswered for <see cref="PublisherOptions.ResendAfter"/>, everything unanswered is simply sent again and the
/// cloud answers duplicates with the seqs it gave before.
/// </summary>
public sealed partial class JournalPublisher(
    JournalReader journal,
    Wakeup signal,
    TargetSet targets,
    SyncLease lease,
    DeviceIdentity identity,
    DeviceRoutes routes,
    PublisherOptions options,
    TimeProvider clock,
    ILogger<JournalPublisher> log)
{
    private readonly PublisherOptions _options = options;

    /// <summary>Retries after a failure, from 1 s up to 30 s apart; health reports a run of failures.</summary>
    public Backoff Backoff { get; } = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));

    /// <summary>Raised with the number of mutations in each batch sent.</summary>
    public event Action<int>? Sent;

    public async Task RunAsync(ISendEndpointProvider sendEndpoints, CancellationToken stoppingToken)
    {
        var push = await sendEndpoints.GetSendEndpoint(routes.Push);
        var replyTo = routes.Replies;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                foreach (var target in await targets.RefreshAsync(stoppingToken))
                {
                    if (lease.IsHeld)
                    {
                        await FillWindowAsync(push, replyTo, target, targets.Window(target.Project), stoppingToken);
                    }
                }
                Backoff.Succeeded();
                await signal.WaitAsync(_options.PollInterval, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // The broker or the database is away; nothing was lost (the journal still has every row).
                var delay = Backoff.Failed(e, clock.GetUtcNow());
                LogPublishFailed(e, Backoff.Failing!.Attempts, delay);
                targets.ClearWindows();
                // Stopping ends the wait, and the loop.
                await Task.Delay(delay, clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private async Task FillWindowAsync(ISendEndpoint push, Uri replyTo, SyncTarget target, InFlightWindow window, CancellationToken ct)
    {
        if (window.ExpireSentBefore(clock.GetUtcNow() - _options.ResendAfter) is > 0 and var dropped)
        {
            LogResending(target.Project, dropped, _options.ResendAfter);
        }
        while (window.Count < _options.MaxBatchesInFlight)
        {
            var batch = await journal.ReadBatchAsync(target, window.LastSeq, Math.Min(_options.MaxBatchMutations, window.MaxMutations ?? int.MaxValue),
                _options.MaxBatchBytes, ct);
            if (batch is null)
            {
                return;
            }
            var id = NewId.NextGuid();
            window.Add(new InFlightWindow.SentBatch(id, batch.FirstSeq, batch.LastSeq, batch.Mutations.Count, clock.GetUtcNow()));
            var message = new PushMutations
            {
                TargetKey = target.Project,
                DeviceId = identity.DeviceId,
                PreviousLocalSeq = batch.PreviousLocalSeq,
                Mutations = batch.Mutations,
            };
            // A send whose connection dies can wait for the broker's confirm for ever: give up on it as on an
            // unanswered batch, and the catch in RunAsync sends everything unanswered again.
            using var unconfirmed = new CancellationTokenSource(_options.ResendAfter, clock);
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct, unconfirmed.Token);
            await push.Send(message, context =>
            {
                // The reply names the batch by RequestId, so the window knows which batch was answered.
                context.RequestId = id;
                context.ResponseAddress = replyTo;
            }, deadline.Token);
            await journal.MarkSentAsync(batch, ct);
            Sent?.Invoke(batch.Mutations.Count);
            LogSent(target.Project, batch.PreviousLocalSeq, batch.FirstSeq, batch.LastSeq, batch.Mutations.Count);
        }
    }

    [LoggerMessage(LogLevel.Debug, "Sent batch of {Target} after {PreviousLocalSeq}: seqs {FirstSeq}..{LastSeq} ({Count} mutations)")]
    private partial void LogSent(string target, long previousLocalSeq, long firstSeq, long lastSeq, int count);

    [LoggerMessage(LogLevel.Warning, "{Dropped} batches of {Target} unanswered after {ResendAfter}; sending everything unanswered again")]
    private partial void LogResending(string target, int dropped, TimeSpan resendAfter);

    [LoggerMessage(LogLevel.Warning, "Publishing the journal failed (attempt {Attempts}); retrying in {Delay}")]
    private partial void LogPublishFailed(Exception exception, int attempts, TimeSpan delay);
}
