using Engram.Pipeline.Contracts;
using Engram.Pipeline.Device.Cursor;
using Engram.Pipeline.Device.Journal;
using Engram.Pipeline.Device.Publisher;
using Engram.Pipeline.Device.Storage;
using Engram.Pipeline.Hosting;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Device;

public static class DeviceServices
{
    /// <summary>Everything one device process runs: the journal, the publisher and the cursor service.</summary>
    public static IServiceCollection AddDevice(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<DeviceOptions>().BindConfiguration(DeviceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PublisherOptions>().BindConfiguration(PublisherOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddRabbitMqOptions();

        var deviceDb = configuration.GetConnectionString("DeviceDb");
        if (string.IsNullOrWhiteSpace(deviceDb))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:DeviceDb is not set (environment variable ConnectionStrings__DeviceDb, e.g. Data Source=/data/engram.db).");
        }
        services.AddSingleton(new DeviceDatabase(deviceDb));
        services.AddSingleton(TimeProvider.System);
        // The id lives in the database: opening it (creating it on first start) comes before the bus.
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<DeviceOptions>>().Value;
            var deviceId = sp.GetRequiredService<DeviceDatabase>().Initialise(options.Id, sp.GetRequiredService<TimeProvider>());
            return new DeviceIdentity(deviceId, options.Target);
        });
        services.AddSingleton<JournalSignal>();
        services.AddSingleton<DeviceJournal>();
        services.AddSingleton<JournalReader>();
        services.AddSingleton<InFlightWindow>();
        services.AddSingleton<CursorService>();

        // Start order: the bus, then the publisher.
        services.AddBusStartDeadline(TimeSpan.FromSeconds(30));
        services.AddMassTransit(bus =>
        {
            bus.AddConsumer<PushAcceptedConsumer>();
            bus.AddConsumer<PushRejectedConsumer>();
            bus.UsePipelineRabbitMq((context, cfg) =>
            {
                var deviceId = context.GetRequiredService<DeviceIdentity>().DeviceId;
                cfg.ReceiveEndpoint(WireNames.DeviceQueue(deviceId), endpoint =>
                {
                    // Replies are sent straight to this queue; nothing is bound to it by message type.
                    endpoint.ConfigureConsumeTopology = false;
                    // One answer at a time: each is a short SQLite transaction, and order is easier to reason about.
                    endpoint.ConcurrentMessageLimit = 1;
                    endpoint.PrefetchCount = 16;
                    endpoint.ConfigureConsumer<PushAcceptedConsumer>(context);
                    endpoint.ConfigureConsumer<PushRejectedConsumer>(context);
                });
            });
        });
        services.AddHostedService<JournalPublisher>();
        return services;
    }
}
