using Engram.Pipeline.Device.Cursor;
using Engram.Pipeline.Device.Journal;
using Engram.Pipeline.Device.Publisher;
using Engram.Pipeline.Device.Pull;
using Engram.Pipeline.Device.Storage;
using MassTransit;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device;

/// <summary>
/// Everything one device is: its database, its record API, the publisher, the cursor service and the
/// puller. A device process runs one; the embedded simulation runs several on one in-memory bus.
/// </summary>
public sealed class DeviceRuntime
{
    public DeviceRuntime(DeviceDatabase database, DeviceIdentity identity, DeviceAddresses addresses, PublisherOptions publisher,
        PullerOptions puller, TimeProvider clock, ILoggerFactory logs)
    {
        Database = database;
        Identity = identity;
        Journal = new DeviceJournal(database, identity, PublisherWakeup, clock);
        Cursor = new CursorService(database, identity, clock);
        Publisher = new JournalPublisher(new JournalReader(database, identity), PublisherWakeup, Window, identity, addresses, publisher,
            clock, logs.CreateLogger<JournalPublisher>());
        Puller = new Puller(new PageApplier(database, identity, clock), database, identity, addresses, PullerWakeup, puller, clock,
            logs.CreateLogger<Puller>());
        _logs = logs;
    }

    private readonly ILoggerFactory _logs;

    public DeviceDatabase Database { get; }
    public DeviceIdentity Identity { get; }
    public DeviceJournal Journal { get; }
    public CursorService Cursor { get; }
    public JournalPublisher Publisher { get; }
    public Puller Puller { get; }
    public InFlightWindow Window { get; } = new();
    /// <summary>Wakes the publisher: a row was recorded or a batch answered.</summary>
    public Wakeup PublisherWakeup { get; } = new();
    /// <summary>Wakes the puller: the target's log grew.</summary>
    public Wakeup PullerWakeup { get; } = new();

    /// <summary>The durable queue this device receives its replies and TargetAdvanced on.</summary>
    public string QueueName => Contracts.WireNames.DeviceQueue(Identity.DeviceId);

    /// <summary>Puts the cursor service and the TargetAdvanced listener on the device's queue.</summary>
    public void ConfigureEndpoint(IReceiveEndpointConfigurator endpoint)
    {
        // One answer at a time: each is a short SQLite transaction, and order is easier to reason about.
        // Answers are sent straight to this queue; only TargetAdvanced (a fan-out) needs its exchange bound here.
        endpoint.ConfigureMessageTopology<Contracts.PushAccepted>(false);
        endpoint.ConfigureMessageTopology<Contracts.PushRejected>(false);
        endpoint.ConcurrentMessageLimit = 1;
        endpoint.PrefetchCount = 16;
        // Another process (the Engram application) may hold the database's write lock for a while.
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<SqliteException>(e => e.SqliteErrorCode is SQLitePCL.raw.SQLITE_BUSY or SQLitePCL.raw.SQLITE_LOCKED);
            r.Intervals(100, 500, 2000, 5000);
        });
        endpoint.Consumer(() => new PushAcceptedConsumer(Cursor, Window, PublisherWakeup, _logs.CreateLogger<PushAcceptedConsumer>()));
        endpoint.Consumer(() => new PushRejectedConsumer(Cursor, Window, PublisherWakeup, _logs.CreateLogger<PushRejectedConsumer>()));
        endpoint.Consumer(() => new TargetAdvancedConsumer(Identity, PullerWakeup));
    }

    /// <summary>Runs the publisher and the puller until <paramref name="stoppingToken"/> fires.</summary>
    public Task RunAsync(IBus bus, CancellationToken stoppingToken) =>
        Task.WhenAll(Publisher.RunAsync(bus, stoppingToken), Puller.RunAsync(bus, stoppingToken));
}
