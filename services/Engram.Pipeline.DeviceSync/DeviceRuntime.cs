using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Publisher;
using Engram.Pipeline.DeviceSync.Pull;
using Engram.Pipeline.DeviceSync.Storage;
using MassTransit;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync;

/// <summary>
/// Everything one device is: its Engram database, the projects it syncs, Engram's sync lease, the publisher, the
/// cursor service and the puller. A device process runs one; the embedded simulation runs several on one in-memory bus.
/// </summary>
public sealed class DeviceRuntime
{
    private readonly ILoggerFactory _logs;
    private readonly CommitWatch _commits;

    public DeviceRuntime(EngramDatabase database, DeviceIdentity identity, DeviceOptions device, DeviceRoutes routes,
        PublisherOptions publisher, PullerOptions puller, TimeProvider clock, ILoggerFactory logs)
    {
        _logs = logs;
        Database = database;
        Identity = identity;
        Routes = routes;
        PublisherWakeup = new Wakeup(clock);
        PullerWakeup = new Wakeup(clock);
        Targets = new TargetSet(database, device);
        Lease = new SyncLease(database, identity, clock, logs.CreateLogger<SyncLease>());
        Cursor = new CursorService(database, identity, clock);
        AnswerRetries = new AnswerRetries(clock);
        Publisher = new JournalPublisher(new JournalReader(database), PublisherWakeup, Targets, Lease, identity, routes, publisher, clock,
            logs.CreateLogger<JournalPublisher>());
        _commits = new CommitWatch(database, PublisherWakeup, clock);
        Puller = new Puller(new PageApplier(database, identity, clock), database, identity, Targets, Lease, routes, PullerWakeup, puller,
            clock, logs.CreateLogger<Puller>());
    }

    public EngramDatabase Database { get; }
    public DeviceIdentity Identity { get; }
    public DeviceRoutes Routes { get; }
    public TargetSet Targets { get; }
    public SyncLease Lease { get; }
    public CursorService Cursor { get; }

    /// <summary>The answers' retries while the database cannot take them; health reports a run of them.</summary>
    public AnswerRetries AnswerRetries { get; }

    public JournalPublisher Publisher { get; }
    public Puller Puller { get; }

    /// <summary>Wakes the publisher: a batch was answered, or someone committed to the database.</summary>
    public Wakeup PublisherWakeup { get; }

    /// <summary>Wakes the puller: a target's log grew.</summary>
    public Wakeup PullerWakeup { get; }

    /// <summary>The durable queue this device receives its replies and TargetAdvanced on.</summary>
    public string QueueName => Contracts.WireNames.DeviceQueue(Identity.DeviceId);

    /// <summary>Puts the cursor service and the TargetAdvanced listener on the device's queue.</summary>
    public void ConfigureEndpoint(IReceiveEndpointConfigurator endpoint)
    {
        // One answer at a time: each is a short SQLite transaction, and order is easier to reason about.
        // Answers are sent straight to this queue; only TargetAdvanced (a fan-out) needs its exchange bound here.
        endpoint.ConfigureMessageTopology<Contracts.PushAccepted>(false);
        endpoint.ConfigureMessageTopology<Contracts.PushRejected>(false);
        // An own account may not declare the shared TargetAdvanced exchange: the operator bound it.
        endpoint.ConfigureMessageTopology<Contracts.TargetAdvanced>(!Routes.OwnAccount);
        // A failed answer goes to this queue's _error queue; nobody listens for Fault events, and an own
        // account could not declare their exchanges.
        endpoint.PublishFaults = false;
        endpoint.ConcurrentMessageLimit = 1;
        endpoint.PrefetchCount = 16;
        // While the Engram application holds the write lock past the busy timeout, the disk is full or its I/O fails,
        // the database is at fault, not the answer: the answer waits on this queue, tried again up to 15 s apart, for
        // as long as that lasts, and never lands in _error for it. Any other failure goes to _error at once.
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<SqliteException>(e => e.SqliteErrorCode is SQLitePCL.raw.SQLITE_BUSY or SQLitePCL.raw.SQLITE_LOCKED
                or SQLitePCL.raw.SQLITE_FULL or SQLitePCL.raw.SQLITE_IOERR);
            r.Exponential(int.MaxValue, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(15), TimeSpan.FromMilliseconds(200));
            r.ConnectRetryObserver(AnswerRetries);
        });
        endpoint.Consumer(() => new PushAcceptedConsumer(Cursor, Targets, PublisherWakeup, _logs.CreateLogger<PushAcceptedConsumer>()));
        endpoint.Consumer(() => new PushRejectedConsumer(Cursor, Targets, PublisherWakeup, _logs.CreateLogger<PushRejectedConsumer>()));
        endpoint.Consumer(() => new TargetAdvancedConsumer(Targets, PullerWakeup));
    }

    /// <summary>Holds Engram's sync lease and runs the publisher and the puller until <paramref name="stoppingToken"/> fires.</summary>
    public Task RunAsync(IBus bus, CancellationToken stoppingToken) =>
        Task.WhenAll(Lease.RunAsync(stoppingToken), _commits.RunAsync(stoppingToken), Publisher.RunAsync(bus, stoppingToken),
            Puller.RunAsync(bus, stoppingToken));
}
