using Engram.Pipeline.CloudIngest.Push;
using Engram.Pipeline.CloudIngest.Storage;
using Engram.Pipeline.Hosting;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Engram.Pipeline.CloudIngest;

public static class CloudIngestServices
{
    /// <summary>Everything one cloud ingest process runs: schema, ingestor, and the push consumer.</summary>
    public static IServiceCollection AddCloudIngest(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<IngestOptions>()
            .BindConfiguration(IngestOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddRabbitMqOptions();

        var cloudDb = configuration.GetConnectionString("CloudDb");
        if (string.IsNullOrWhiteSpace(cloudDb))
        {
            throw new InvalidOperationException(
                "ConnectionStrings:CloudDb is not set (environment variable ConnectionStrings__CloudDb, " +
                "e.g. Host=db;Username=engram;Password=…;Database=engram).");
        }
        services.AddSingleton(_ => NpgsqlDataSource.Create(cloudDb));
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<PushIngestor>();

        // Registered before MassTransit so the schema exists before the first message is taken.
        services.AddHostedService<CloudSchema>();
        services.AddBusStartDeadline(TimeSpan.FromSeconds(30));
        services.AddMassTransit(bus =>
        {
            bus.AddConsumer<PushMutationsConsumer, PushMutationsConsumerDefinition>();
            bus.UsePipelineRabbitMq((context, cfg) => cfg.ConfigureEndpoints(context));
        });
        return services;
    }
}
