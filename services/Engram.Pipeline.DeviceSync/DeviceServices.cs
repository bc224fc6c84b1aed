using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Hosting;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.DeviceSync;

public static class DeviceServices
{
    /// <summary>One device process: its database, the publisher, the cursor service and the puller, over RabbitMQ.</summary>
    public static IServiceCollection AddDevice(this IServiceCollection services, IConfiguration configuration)
    {
        var deviceDb = configuration.GetConnectionString("DeviceDb");
        if (string.IsNullOrWhiteSpace(deviceDb))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:DeviceDb is not set: name Engram's database (environment variable ConnectionStrings__DeviceDb, e.g. Data Source=/home/me/.engram/engram.db).");
        }
        services.AddDeviceOptions();
        services.AddRabbitMqOptions();
        services.AddSingleton(TimeProvider.System);
        // The id lives in the database: opening it (creating it on first start) comes before the bus.
        services.AddSingleton(sp => CreateRuntime(deviceDb,
            sp.GetRequiredService<IOptions<DeviceOptions>>().Value,
            sp.GetRequiredService<IOptions<PublisherOptions>>().Value,
            sp.GetRequiredService<IOptions<PullerOptions>>().Value,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>(),
            RabbitMqOptions.UserName(sp.GetRequiredService<IOptions<RabbitMqOptions>>().Value.Uri!),
            sp.GetRequiredService<IOptions<RabbitMqOptions>>().Value.QueueTypeInUse()));
        services.AddBusStartDeadline(TimeSpan.FromSeconds(30));
        services.AddMassTransit(bus => bus.UsePipelineRabbitMq((context, cfg) =>
        {
            var runtime = context.GetRequiredService<DeviceRuntime>();
            var user = RabbitMqOptions.UserName(context.GetRequiredService<IOptions<RabbitMqOptions>>().Value.Uri!);
            cfg.ConfigureSend(send => send.UseSendExecute(message => StampSender(message, user)));
            if (runtime.Routes.OwnAccount)
            {
                // MassTransit's bus endpoint (where pull pages arrive) gets a name the account may declare.
                cfg.OverrideDefaultBusEndpointQueueName(WireNames.DeviceBusQueue(runtime.Identity.DeviceId));
            }
            cfg.ReceiveEndpoint(runtime.QueueName, endpoint =>
            {
                endpoint.UsePipelineQueueType(context);
                runtime.ConfigureEndpoint(endpoint);
            });
        }));
        services.AddHostedService<DeviceWorker>();
        services.AddMetrics();
        services.AddSingleton<DeviceMetrics>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<HealthOptions>>().Value);
        services.AddHealthChecks().AddCheck<DeviceHealthCheck>("device-database", tags: ["ready"]);
        return services;
    }

    /// <summary>Binds and validates the device's options from configuration.</summary>
    public static IServiceCollection AddDeviceOptions(this IServiceCollection services)
    {
        services.AddOptions<DeviceOptions>().BindConfiguration(DeviceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PublisherOptions>().BindConfiguration(PublisherOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PullerOptions>().BindConfiguration(PullerOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<HealthOptions>().BindConfiguration(HealthOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        return services;
    }

    /// <summary>
    /// Attaches to an Engram database (creating upstream's schema in an empty file) and builds the device around it.
    /// <paramref name="brokerUser"/> is the RabbitMQ user it connects as (none on the in-memory bus) and
    /// <paramref name="queueType"/> the type of the queues it sends to (the embedded bus has only classic ones); they
    /// decide the <see cref="DeviceRoutes"/>.
    /// </summary>
    public static DeviceRuntime CreateRuntime(string deviceDb, DeviceOptions device, PublisherOptions publisher,
        PullerOptions puller, TimeProvider clock, ILoggerFactory logs, string? brokerUser = null, QueueType queueType = QueueType.Classic)
    {
        var database = new EngramDatabase(deviceDb);
        var identity = new DeviceIdentity(database.Attach(device.Id, clock));
        return new DeviceRuntime(database, identity, device, DeviceRoutes.For(identity.DeviceId, brokerUser, queueType), publisher, puller,
            clock, logs);
    }

    /// <summary>
    /// Every message names its sender in the AMQP <c>user_id</c> property. RabbitMQ refuses a message whose
    /// user_id is not the connection's user, so the cloud can trust it. Mandatory: a send nothing is bound
    /// to (an own account the operator has not set up) fails instead of vanishing.
    /// </summary>
    private static void StampSender(SendContext message, string user)
    {
        if (message.TryGetPayload<RabbitMqSendContext>(out var rabbit))
        {
            rabbit.BasicProperties.UserId = user;
            rabbit.Mandatory = true;
        }
    }
}
