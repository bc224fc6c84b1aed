using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engram.Pipeline.Contracts;
using MassTransit;

namespace Engram.Pipeline.Integration.Tests.BadInput;

/// <summary>How one input ended: answered by the cloud, or moved to an <c>_error</c> queue with its exception.</summary>
public abstract record Ending
{
    private Ending() { }

    public sealed record Accepted(PushAccepted Reply) : Ending;

    public sealed record Refused(PushRejected Reply) : Ending;

    /// <param name="Queue">The error queue it is in.</param>
    /// <param name="ExceptionType">MassTransit's <c>MT-Fault-ExceptionType</c> header.</param>
    /// <param name="Reason">MassTransit's <c>MT-Fault-Message</c> header.</param>
    /// <param name="InService">The exception came from the service's code (its stack trace says so), not from reading the message.</param>
    public sealed record DeadLettered(string Queue, string ExceptionType, string Reason, bool InService) : Ending;
}

/// <summary>
/// Puts inputs on the cloud's queues as any AMQP client could (through the management API) and
/// collects how each one ended: the cloud's reply, matched by the RequestId its envelope carried, or
/// the copy MassTransit moved to an <c>_error</c> queue, matched by the AMQP message id it was sent with
/// (a background loop takes those off the error queues).
/// </summary>
public sealed class PushInbox : IAsyncDisposable
{
    /// <summary>The content type of MassTransit's JSON envelope.</summary>
    public const string EnvelopeContentType = "application/vnd.masstransit+json";

    private static readonly string[] ErrorQueues = [WireNames.PushQueue + "_error", WireNames.PullQueue + "_error"];

    private readonly PipelineWorld _world;
    private readonly IBusControl _bus;
    private readonly ConcurrentDictionary<Guid, TaskCompletionSource<Ending>> _endings = new();
    private readonly ConcurrentQueue<string> _problems = new();
    private readonly CancellationTokenSource _stopping = new();
    private Task _draining = Task.CompletedTask;
    private int _sent;

    private PushInbox(PipelineWorld world, IBusControl bus)
    {
        _world = world;
        _bus = bus;
    }

    /// <summary>Inputs put on a queue so far.</summary>
    public int Sent => _sent;

    /// <summary>Where replies go: the inbox bus's own temporary queue.</summary>
    public Uri ReplyAddress => _bus.Address;

    public static async Task<PushInbox> StartAsync(PipelineWorld world)
    {
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(world.Cluster.Settings.RabbitMqUri));
        var inbox = new PushInbox(world, bus);
        bus.ConnectHandler<PushAccepted>(context =>
        {
            inbox.Record(context.RequestId, new Ending.Accepted(context.Message));
            return Task.CompletedTask;
        });
        bus.ConnectHandler<PushRejected>(context =>
        {
            inbox.Record(context.RequestId, new Ending.Refused(context.Message));
            return Task.CompletedTask;
        });
        // When the consumer throws, MassTransit also sends the requester a Fault; the error queue's copy is what counts.
        bus.ConnectHandler<Fault<PushMutations>>(_ => Task.CompletedTask);
        await bus.StartAsync();
        inbox._draining = Task.Run(() => inbox.DrainErrorQueuesAsync(inbox._stopping.Token));
        return inbox;
    }

    /// <summary>
    /// Sends <paramref name="message"/> in a MassTransit envelope, as a device would, but with whatever
    /// it holds; replies come back to this inbox.
    /// </summary>
    public Task SendAsync(Guid id, JsonNode? message, string messageType = nameof(PushMutations), string queue = WireNames.PushQueue) =>
        SendRawAsync(id, Encoding.UTF8.GetBytes(Envelope(id, message, messageType)), EnvelopeContentType, queue);

    /// <summary>MassTransit's envelope around <paramref name="message"/>, asking for the reply to come to this inbox.</summary>
    public string Envelope(Guid id, JsonNode? message, string messageType = nameof(PushMutations)) => new JsonObject
    {
        ["messageId"] = id,
        ["requestId"] = id,
        ["responseAddress"] = ReplyAddress.ToString(),
        ["messageType"] = new JsonArray($"urn:message:Engram.Pipeline.Contracts:{messageType}"),
        ["message"] = message?.DeepClone(),
    }.ToJsonString();

    /// <summary>Sends a batch through MassTransit, exactly as a device does (for bodies too large for the management API).</summary>
    public async Task SendAsync(Guid id, PushMutations batch)
    {
        var push = await _bus.GetSendEndpoint(new Uri($"queue:{WireNames.PushQueue}"));
        await push.Send(batch, context =>
        {
            context.MessageId = id;
            context.RequestId = id;
            context.ResponseAddress = ReplyAddress;
        });
        Interlocked.Increment(ref _sent);
    }

    /// <summary>Puts <paramref name="body"/> on a queue exactly as given.</summary>
    public async Task SendRawAsync(Guid id, byte[] body, string? contentType, string queue = WireNames.PushQueue)
    {
        await _world.Servers.PublishRawAsync(_world.VirtualHost, queue, body, contentType, id.ToString());
        Interlocked.Increment(ref _sent);
    }

    /// <summary>How the input sent with <paramref name="id"/> ended, once it has.</summary>
    public Task<Ending> EndingAsync(Guid id) => Slot(id).Task;

    /// <summary>Waits until every id has ended; fails when one had not by the deadline, or one ended twice.</summary>
    public async Task<IReadOnlyDictionary<Guid, Ending>> WaitForAllAsync(IReadOnlyCollection<Guid> ids, TimeSpan deadline)
    {
        var all = Task.WhenAll(ids.Select(EndingAsync));
        var first = await Task.WhenAny(all, _draining, Task.Delay(deadline));
        if (first == _draining)
        {
            await _draining;
        }
        if (first != all)
        {
            var missing = ids.Where(id => !Slot(id).Task.IsCompleted).ToList();
            Assert.Fail($"{missing.Count} of {ids.Count} inputs had no ending after {deadline.TotalSeconds:0} s, e.g. {missing[0]}");
        }
        var endings = await all;
        Assert.True(_problems.IsEmpty, string.Join("\n", _problems));
        return ids.Zip(endings).ToDictionary(pair => pair.First, pair => pair.Second);
    }

    /// <summary>
    /// Fails when a message was moved to a <c>_skipped</c> queue: MassTransit's place for messages nobody
    /// consumes, where they sit with no reason given.
    /// </summary>
    public async Task AssertNothingSkippedAsync()
    {
        using var queues = await _world.Servers.GetManagementAsync($"api/queues/{Uri.EscapeDataString(_world.VirtualHost)}");
        var skipped = queues.RootElement.EnumerateArray()
            .Select(q => q.GetProperty("name").GetString()!)
            .Where(name => name.EndsWith("_skipped", StringComparison.Ordinal))
            .ToList();
        Assert.True(skipped.Count == 0, $"messages were moved without a reason to {string.Join(", ", skipped)}");
    }

    private async Task DrainErrorQueuesAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            using (var queues = await _world.Servers.GetManagementAsync($"api/queues/{Uri.EscapeDataString(_world.VirtualHost)}"))
            {
                var existing = queues.RootElement.EnumerateArray().Select(q => q.GetProperty("name").GetString()).ToHashSet();
                foreach (var queue in ErrorQueues.Where(existing.Contains))
                {
                    foreach (var message in await _world.Servers.TakeMessagesAsync(_world.VirtualHost, queue, 1000))
                    {
                        RecordDeadLetter(queue, message.GetProperty("properties"));
                    }
                }
            }
            await Task.Delay(200, CancellationToken.None);
        }
    }

    private void RecordDeadLetter(string queue, JsonElement properties)
    {
        var headers = properties.TryGetProperty("headers", out var h) ? h : default;
        string? Header(string name) =>
            headers.ValueKind == JsonValueKind.Object && headers.TryGetProperty(name, out var value) ? value.GetString() : null;
        var reason = Header("MT-Fault-Message");
        if (string.IsNullOrWhiteSpace(reason))
        {
            _problems.Enqueue($"a message in {queue} carries no MT-Fault-Message: {properties}");
        }
        var id = properties.TryGetProperty("message_id", out var messageId) && Guid.TryParse(messageId.GetString(), out var parsed)
            ? parsed
            : (Guid?)null;
        var inService = Header("MT-Fault-StackTrace")?.Contains("Engram.Pipeline.Cloud.", StringComparison.Ordinal) ?? false;
        Record(id, new Ending.DeadLettered(queue, Header("MT-Fault-ExceptionType") ?? "", reason ?? "", inService));
    }

    private void Record(Guid? id, Ending ending)
    {
        if (id is not { } key)
        {
            _problems.Enqueue($"an ending without the id of its input: {ending}");
        }
        else if (!Slot(key).TrySetResult(ending))
        {
            _problems.Enqueue($"{key} ended twice, the second time as {ending}");
        }
    }

    private TaskCompletionSource<Ending> Slot(Guid id) =>
        _endings.GetOrAdd(id, _ => new TaskCompletionSource<Ending>(TaskCreationOptions.RunContinuationsAsynchronously));

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _draining;
        await _bus.StopAsync();
        _stopping.Dispose();
    }
}
