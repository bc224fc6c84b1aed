using Engram.Pipeline.Device.Monitoring;
using Engram.Pipeline.Device.Storage;
using Engram.Pipeline.Hosting;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Device;

public static class DeviceServices
{
    /// <summary>One device process: its database, the publisher, the cursor service and the puller, over RabbitMQ.</summary>
    public static IServiceCollection AddDevice(this IServiceCollection services, IConfiguration configuration)
    {
        var deviceDb = configuration.GetConnectionString("DeviceDb");
        if (string.IsNullOrWhiteSpace(deviceDb))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:DeviceDb is not set (environment variable ConnectionStrings__DeviceDb, e.g. Data Source=/data/engram.db).");
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
            sp.GetRequiredService<IOptions<RabbitMqOptions>>().Value.QueueTypeInUse()));
        services.AddBusStartDeadline(TimeSpan.FromSeconds(30));
        services.AddMassTransit(bus => bus.UsePipelineRabbitMq((context, cfg) =>
        {
            var runtime = context.GetRequiredService<DeviceRuntime>();
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
    /// Opens (or creates) a device database and builds the device around it, sending to queues of
    /// <paramref name="queueType"/> (the embedded bus has only classic ones).
    /// </summary>
    public static DeviceRuntime CreateRuntime(string deviceDb, DeviceOptions device, PublisherOptions publisher,
        PullerOptions puller, TimeProvider clock, ILoggerFactory logs, QueueType queueType = QueueType.Classic)
    {
        var database = new DeviceDatabase(deviceDb);
        var identity = new DeviceIdentity(database.Initialise(device.Id, clock), device.Target);
        return new DeviceRuntime(database, identity, DeviceAddresses.For(identity.DeviceId, queueType), publisher, puller, clock, logs);
    }
}
