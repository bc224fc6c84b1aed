using Engram.Pipeline.Cloud.Authorisation;
using Engram.Pipeline.Cloud.Pull;
using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.Hosting;
using MassTransit;
using Npgsql;

namespace Engram.Pipeline.Cloud;

public static class CloudIngestServices
{
    /// <summary>One cloud ingest process: PostgreSQL, RabbitMQ, and the push and pull consumers.</summary>
    public static IServiceCollection AddCloudIngest(this IServiceCollection services, IConfiguration configuration)
    {
        var cloudDb = configuration.GetConnectionString("CloudDb");
        if (string.IsNullOrWhiteSpace(cloudDb))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:CloudDb is not set (environment variable ConnectionStrings__CloudDb, " +
                "e.g. Host=db;Username=engram;Password=…;Database=engram).");
        }
        services.AddRabbitMqOptions();
        services.AddCloudLog();
        services.AddSingleton(_ => NpgsqlDataSource.Create(cloudDb));
        services.AddSingleton<ICloudStore, PostgresCloudStore>();
        // Registered before MassTransit so the schema exists before the first message is taken.
        services.AddHostedService<PostgresSchema>();
        services.AddHealthChecks().AddCheck<CloudStoreHealthCheck>("cloud-database", tags: ["ready"]);
        services.AddBusStartDeadline(TimeSpan.FromSeconds(30));
        services.AddMassTransit(bus =>
        {
            bus.AddCloudConsumers();
            bus.UsePipelineRabbitMq((context, cfg) => cfg.ConfigureEndpoints(context));
        });
        return services;
    }

    /// <summary>The cloud's logic over whichever <see cref="ICloudStore"/> is registered.</summary>
    public static IServiceCollection AddCloudLog(this IServiceCollection services)
    {
        services.AddOptions<IngestOptions>()
            .BindConfiguration(IngestOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.AddSingleton<IngestMetrics>();
        services.AddSingleton<PushIngestor>();
        services.AddSingleton<PullReader>();
        services.AddSingleton<DeviceAuthoriser>();
        return services;
    }

    /// <summary>The consumers of <c>engram-push</c> and <c>engram-pull</c>.</summary>
    public static void AddCloudConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<PushMutationsConsumer, CloudQueueDefinition<PushMutationsConsumer>>();
        bus.AddConsumer<PullMutationsConsumer, CloudQueueDefinition<PullMutationsConsumer>>();
    }
}
