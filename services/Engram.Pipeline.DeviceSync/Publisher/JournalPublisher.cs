using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.Hosting;
using MassTransit;

namespace Engram.Pipeline.DeviceSync.Publisher;

/// <summary>
/// Ships the journal to <c>engram-push</c> (through <see cref="DeviceRoutes.Push"/>): unanswered rows in
/// seq order, in batches, several in flight. The journal is the only durable state: after a restart, or
/// when a batch goes unanswered for <see cref="PublisherOptions.ResendAfter"/>, everything unanswered is
/// simply sent again and the cloud answers duplicates with the seqs it gave before.
/// </summary>
public sealed partial class JournalPublisher(
    JournalReader journal,
    Wakeup signal,
    InFlightWindow window,
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
                await FillWindowAsync(push, replyTo, stoppingToken);
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
                window.Clear();
                // Stopping ends the wait, and the loop.
                await Task.Delay(delay, clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private async Task FillWindowAsync(ISendEndpoint push, Uri replyTo, CancellationToken ct)
    {
        if (window.ExpireSentBefore(clock.GetUtcNow() - _options.ResendAfter) is > 0 and var dropped)
        {
            LogResending(dropped, _options.ResendAfter);
        }
        while (window.Count < _options.MaxBatchesInFlight)
        {
            var batch = await journal.ReadBatchAsync(window.LastSeq, _options.MaxBatchMutations, _options.MaxBatchBytes, ct);
            if (batch is null)
            {
                return;
            }
            var id = NewId.NextGuid();
            window.Add(new InFlightWindow.SentBatch(id, batch.FirstSeq, batch.LastSeq, batch.Mutations.Count, clock.GetUtcNow()));
            var message = new PushMutations
            {
                TargetKey = identity.Target,
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
            LogSent(batch.PreviousLocalSeq, batch.FirstSeq, batch.LastSeq, batch.Mutations.Count);
        }
    }

    [LoggerMessage(LogLevel.Debug, "Sent batch after {PreviousLocalSeq}: seqs {FirstSeq}..{LastSeq} ({Count} mutations)")]
    private partial void LogSent(long previousLocalSeq, long firstSeq, long lastSeq, int count);

    [LoggerMessage(LogLevel.Warning, "{Dropped} batches unanswered after {ResendAfter}; sending everything unanswered again")]
    private partial void LogResending(int dropped, TimeSpan resendAfter);

    [LoggerMessage(LogLevel.Warning, "Publishing the journal failed (attempt {Attempts}); retrying in {Delay}")]
    private partial void LogPublishFailed(Exception exception, int attempts, TimeSpan delay);
}
