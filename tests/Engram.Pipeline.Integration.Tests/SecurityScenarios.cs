using System.Text;
using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using MassTransit;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// The deployment as it should run: the real cloud ingest executable with its default settings (devices
/// authorised) as the restricted <c>engram_ingest</c> database role, and devices on their own RabbitMQ
/// accounts made by <c>device-user add</c>. Grants: phone and laptop on <c>team</c>, mallory on <c>lab</c>,
/// victim on <c>team</c> (it never sends anything); <c>secret</c> holds rows nobody here may read.
/// </summary>
public sealed class SecuredPipeline(ServersFixture servers) : IAsyncLifetime
{
    public const string SecretPayload = """{"title":"the secret"}""";

    private ServiceProcess? _ingest;

    public PipelineWorld World { get; private set; } = null!;
    public string IngestDb { get; private set; } = "";
    public Dictionary<string, Uri> Accounts { get; } = [];

    public async Task InitializeAsync()
    {
        World = await PipelineWorld.CreateAsync(servers, "security", ingestProcesses: 1);
        IngestDb = await World.CreateIngestRoleAsync();
        foreach (var (device, target) in new[] { ("phone", "team"), ("laptop", "team"), ("mallory", "lab"), ("victim", "team") })
        {
            Accounts[device] = await World.AddDeviceAccountAsync(device, target);
        }
        await using (var owner = new NpgsqlConnection(World.Cluster.Settings.CloudDb))
        {
            await owner.OpenAsync();
            await using var seed = new NpgsqlCommand($"""
                INSERT INTO cloud_targets (target_key, head) VALUES ('secret', 1);
                INSERT INTO cloud_devices (target_key, device_id, last_local_seq) VALUES ('secret', 'insider', 1);
                INSERT INTO cloud_mutations (target_key, cloud_seq, device_id, local_seq, entity, op, entity_key, payload, occurred_at)
                VALUES ('secret', 1, 'insider', 1, 'observation', 'upsert', 'plans', '{SecretPayload}', now());
                """, owner);
            await seed.ExecuteNonQueryAsync();
        }
        // No Ingest__AuthoriseDevices: the default must be the secure one.
        _ingest = await ServiceProcess.StartAsync("Engram.Pipeline.CloudIngest", new Dictionary<string, string>
        {
            ["RabbitMq__Uri"] = World.Cluster.Settings.RabbitMqUri!.ToString(),
            ["ConnectionStrings__CloudDb"] = IngestDb,
        }, TimeSpan.FromMinutes(1));
    }

    public async Task DisposeAsync()
    {
        if (_ingest is not null)
        {
            await _ingest.DisposeAsync();
        }
        await World.DisposeAsync();
    }

    public Task<long> CountAsync(string sql) => World.CloudScalarAsync(sql);

    /// <summary>A MassTransit bus on a device's own account, as the device itself configures it (minus the user_id stamp).</summary>
    public async Task<IBusControl> DeviceBusAsync(string device)
    {
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(Accounts[device]);
            cfg.OverrideDefaultBusEndpointQueueName(WireNames.DeviceBusQueue(device));
        });
        await bus.StartAsync();
        return bus;
    }

    /// <summary>Sets (or, with null, leaves out) the AMQP user_id of a message being sent.</summary>
    public static void UserId(SendContext context, string? user)
    {
        if (context.TryGetPayload<RabbitMqSendContext>(out var rabbit))
        {
            rabbit.BasicProperties.UserId = user;
        }
    }

    /// <summary>A plain AMQP connection on a device's own account, as any client could open.</summary>
    public Task<IConnection> ConnectAsync(string device) => new ConnectionFactory { Uri = Accounts[device] }.CreateConnectionAsync();
}

[Collection(ServersFixture.Collection)]
public sealed class When_devices_have_their_own_broker_accounts(SecuredPipeline secured) : IClassFixture<SecuredPipeline>
{
    private static readonly Mutation Edit = new()
    {
        LocalSeq = 1, Entity = "observation", Op = "upsert", EntityKey = "note", Payload = """{"title":"mine"}""",
        OccurredAt = DateTimeOffset.UnixEpoch,
    };

    [Fact]
    public async Task A_push_naming_another_device_or_an_ungranted_target_is_refused_and_nothing_is_written()
    {
        var bus = await secured.DeviceBusAsync("mallory");
        try
        {
            var push = bus.CreateRequestClient<PushMutations>(new Uri($"exchange:{WireNames.DevicePushExchange("mallory")}"));
            async Task<object> PushAsync(string target, string device, string? userId)
            {
                var response = await push.GetResponse<PushAccepted, PushRejected>(
                    new PushMutations { TargetKey = target, DeviceId = device, PreviousLocalSeq = 0, Mutations = [Edit] },
                    x => x.UseExecute(context => SecuredPipeline.UserId(context, userId)));
                return response.Message;
            }

            var spoofed = Assert.IsType<PushRejected>(await PushAsync("team", "victim", userId: "mallory"));
            var ungranted = Assert.IsType<PushRejected>(await PushAsync("team", "mallory", userId: "mallory"));
            var anonymous = Assert.IsType<PushRejected>(await PushAsync("lab", "mallory", userId: null));
            // The same account, naming itself and its own target, is accepted: the refusals above are the authorisation.
            var own = Assert.IsType<PushAccepted>(await PushAsync("lab", "mallory", userId: "mallory"));

            Assert.All(new[] { spoofed, ungranted, anonymous }, r => Assert.Equal(RejectionReasons.NotAuthorised, r.Reason));
            Assert.Contains("may act only as device 'mallory'", spoofed.Detail, StringComparison.Ordinal);
            Assert.Contains("not granted", ungranted.Detail, StringComparison.Ordinal);
            Assert.Contains("no AMQP user_id", anonymous.Detail, StringComparison.Ordinal);
            Assert.Equal([1L], own.Mappings.Select(m => m.LocalSeq));
        }
        finally
        {
            await bus.StopAsync();
        }
        Assert.Equal(0, await secured.CountAsync("SELECT COUNT(*) FROM cloud_devices WHERE device_id = 'victim' OR target_key = 'team' AND device_id = 'mallory'"));
        Assert.Equal(0, await secured.CountAsync("SELECT COUNT(*) FROM cloud_mutations WHERE device_id = 'victim' OR target_key = 'team' AND device_id = 'mallory'"));
        Assert.Equal(0, await secured.CountAsync("SELECT COUNT(*) FROM cloud_rejections WHERE device_id IN ('victim', 'mallory')"));
        Assert.Equal(1, await secured.CountAsync("SELECT COUNT(*) FROM cloud_mutations WHERE target_key = 'lab' AND device_id = 'mallory'"));
    }

    [Fact]
    public async Task A_user_id_that_is_not_the_connections_user_is_refused_by_the_broker_itself()
    {
        await using var connection = await secured.ConnectAsync("mallory");
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(
            publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));

        await Assert.ThrowsAnyAsync<OperationInterruptedException>(async () => await channel.BasicPublishAsync(
            WireNames.DevicePushExchange("mallory"), "", mandatory: true, new BasicProperties { UserId = "victim" },
            Encoding.UTF8.GetBytes("{}")));

        Assert.False(channel.IsOpen);
        Assert.Equal(406, channel.CloseReason!.ReplyCode);
        Assert.Contains("user_id property set to 'victim' but authenticated user was 'mallory'", channel.CloseReason.ReplyText,
            StringComparison.Ordinal);
        Assert.Equal(0, await secured.CountAsync("SELECT COUNT(*) FROM cloud_devices WHERE device_id = 'victim'"));
    }

    [Fact]
    public async Task A_pull_of_a_target_not_granted_or_as_another_device_is_refused_and_returns_nothing()
    {
        var bus = await secured.DeviceBusAsync("mallory");
        try
        {
            var pull = bus.CreateRequestClient<PullMutations>(new Uri($"exchange:{WireNames.DevicePullExchange("mallory")}"));
            Task<Response<MutationsPage>> PullAsync(string target, string device) => pull.GetResponse<MutationsPage>(
                new PullMutations { TargetKey = target, DeviceId = device, AfterSeq = 0, Limit = 100 },
                x => x.UseExecute(context => SecuredPipeline.UserId(context, "mallory")));

            var secret = await Assert.ThrowsAsync<RequestFaultException>(() => PullAsync("secret", "mallory"));
            var asVictim = await Assert.ThrowsAsync<RequestFaultException>(() => PullAsync("team", "victim"));
            // Its own target is served: the refusals above are the authorisation.
            var own = await PullAsync("lab", "mallory");

            foreach (var refusal in new[] { secret, asVictim })
            {
                var reason = Assert.Single(refusal.Fault!.Exceptions).Message;
                Assert.StartsWith($"{RejectionReasons.NotAuthorised}: ", reason, StringComparison.Ordinal);
                Assert.DoesNotContain("the secret", reason, StringComparison.Ordinal);
            }
            Assert.Equal("lab", own.Message.TargetKey);
        }
        finally
        {
            await bus.StopAsync();
        }
        // Refusals are answered, not dead-lettered.
        using var queues = await secured.World.Servers.GetManagementAsync($"api/queues/{Uri.EscapeDataString(secured.World.VirtualHost)}");
        Assert.DoesNotContain(queues.RootElement.EnumerateArray(), q => q.GetProperty("name").GetString() == WireNames.PullQueue + "_error");
    }

    [Fact]
    public async Task The_account_can_read_only_its_own_queues_and_touch_nothing_shared()
    {
        await using var connection = await secured.ConnectAsync("mallory");
        var consumer = (IChannel channel) => new AsyncEventingBasicConsumer(channel);

        var refusals = new Dictionary<string, ShutdownEventArgs>
        {
            ["consume engram-push"] = await RefusedAsync(connection, c => c.BasicConsumeAsync(WireNames.PushQueue, false, consumer(c))),
            ["consume engram-pull"] = await RefusedAsync(connection, c => c.BasicConsumeAsync(WireNames.PullQueue, false, consumer(c))),
            ["consume another device's queue"] = await RefusedAsync(connection,
                c => c.BasicConsumeAsync(WireNames.DeviceQueue("victim"), false, consumer(c))),
            ["purge engram-push"] = await RefusedAsync(connection, c => c.QueuePurgeAsync(WireNames.PushQueue)),
            ["delete engram-push"] = await RefusedAsync(connection, c => c.QueueDeleteAsync(WireNames.PushQueue)),
            ["declare TargetAdvanced"] = await RefusedAsync(connection,
                c => c.ExchangeDeclareAsync(DeviceAccounts.TargetAdvancedExchange, ExchangeType.Fanout, durable: true)),
            ["bind TargetAdvanced to its own queue"] = await RefusedAsync(connection,
                c => c.ExchangeBindAsync(WireNames.DeviceQueue("mallory"), DeviceAccounts.TargetAdvancedExchange, "")),
            ["send another device an answer"] = await RefusedAsync(connection, c => c.BasicPublishAsync(
                WireNames.DeviceQueue("victim"), "", mandatory: true, new BasicProperties { UserId = "mallory" },
                Encoding.UTF8.GetBytes("{}")).AsTask()),
            ["send straight to engram-push"] = await RefusedAsync(connection, c => c.BasicPublishAsync(
                WireNames.PushQueue, "", mandatory: true, new BasicProperties { UserId = "mallory" }, Encoding.UTF8.GetBytes("{}")).AsTask()),
        };

        Assert.All(refusals, r => Assert.Equal((ushort)403, r.Value.ReplyCode));
        Assert.All(refusals, r => Assert.Contains("ACCESS_REFUSED", r.Value.ReplyText, StringComparison.Ordinal));
        // The same connection may declare and read its own queue: the refusals are the permissions.
        await using var own = await connection.CreateChannelAsync();
        await own.QueueDeclareAsync(WireNames.DeviceQueue("mallory"), durable: true, exclusive: false, autoDelete: false);
        await own.BasicConsumeAsync(WireNames.DeviceQueue("mallory"), false, consumer(own));
    }

    [Fact]
    public async Task Devices_on_their_own_accounts_push_and_pull_end_to_end()
    {
        var cluster = secured.World.Cluster;
        var phone = await cluster.StartDeviceAsync("phone", CancellationToken.None, secured.Accounts["phone"], seed: 1);
        var laptop = await cluster.StartDeviceAsync("laptop", CancellationToken.None, secured.Accounts["laptop"], seed: 2);
        Assert.True(phone.Runtime.Routes.OwnAccount);

        var journaled = new EngramWorkload(1, "phone", ["team"], enrollAfter: 0).Journal(phone.Engram, 300).Count
                        + new EngramWorkload(2, "laptop", ["team"], enrollAfter: 0).Journal(laptop.Engram, 300).Count;
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);

        await secured.World.AssertInvariantsAsync();
        await secured.World.AssertEveryJournalRowMappedAsync(journaled, "team");
        Assert.Equal(await secured.World.MappedAsync("team"),
            await secured.CountAsync("SELECT COUNT(*) FROM cloud_mutations WHERE target_key = 'team'"));
        Assert.Equal(0, await secured.CountAsync("SELECT COUNT(*) FROM cloud_rejections"));
    }

    [Fact]
    public async Task The_ingest_database_role_may_only_read_and_append_the_cloud_log()
    {
        await using var ingest = new NpgsqlConnection(secured.IngestDb);
        await ingest.OpenAsync();
        string[] forbidden =
        [
            "DELETE FROM cloud_mutations",
            "UPDATE cloud_mutations SET payload = '{}'",
            "TRUNCATE cloud_targets",
            "INSERT INTO cloud_device_grants (target_key, device_id) VALUES ('secret', 'mallory')",
            "CREATE TABLE stolen (payload jsonb)",
            "DROP TABLE cloud_rejections",
        ];
        foreach (var sql in forbidden)
        {
            await using var command = new NpgsqlCommand(sql, ingest);
            var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
            Assert.True(error.SqlState is PostgresErrorCodes.InsufficientPrivilege, $"{sql}: {error.SqlState} {error.MessageText}");
        }
        await using var read = new NpgsqlCommand("SELECT COUNT(*) FROM cloud_mutations WHERE target_key = 'secret'", ingest);
        Assert.Equal(1L, await read.ExecuteScalarAsync());
    }

    [Fact]
    public async Task Removing_a_device_user_closes_its_connection_and_withdraws_its_grants()
    {
        var world = secured.World;
        var tablet = await world.AddDeviceAccountAsync("tablet", "team");
        var factory = new ConnectionFactory { Uri = tablet };
        await using var connection = await factory.CreateConnectionAsync();
        var closed = new TaskCompletionSource<ShutdownEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.ConnectionShutdownAsync += (_, reason) =>
        {
            closed.TrySetResult(reason);
            return Task.CompletedTask;
        };

        await using (var accounts = new DeviceAccounts(world.Cluster.Settings.RabbitMqUri!, world.Servers.ManagementUri, world.Cluster.Settings.CloudDb!))
        {
            await accounts.RemoveAsync("tablet", CancellationToken.None);
        }

        // The broker closes it: "user 'tablet' is deleted", or first "access to vhost … refused for user 'tablet'".
        var reason = await closed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(ShutdownInitiator.Peer, reason.Initiator);
        Assert.Contains("user 'tablet'", reason.ReplyText, StringComparison.Ordinal);
        await Assert.ThrowsAsync<BrokerUnreachableException>(() => factory.CreateConnectionAsync());
        Assert.Equal(0, await secured.CountAsync("SELECT COUNT(*) FROM cloud_device_grants WHERE device_id = 'tablet'"));
    }

    /// <summary>Runs an operation on a fresh channel and returns why the broker closed the channel.</summary>
    private static async Task<ShutdownEventArgs> RefusedAsync(IConnection connection, Func<IChannel, Task> operation)
    {
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(
            publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await Assert.ThrowsAnyAsync<OperationInterruptedException>(() => operation(channel));
        return channel.CloseReason!;
    }
}
