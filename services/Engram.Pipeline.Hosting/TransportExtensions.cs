using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Hosting;

public static class TransportExtensions
{
    /// <summary>Binds and validates <see cref="RabbitMqOptions"/> at start-up.</summary>
    public static IServiceCollection AddRabbitMqOptions(this IServiceCollection services)
    {
        services.AddOptions<RabbitMqOptions>()
            .BindConfiguration(RabbitMqOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        return services;
    }

    /// <summary>
    /// Points the bus at the configured broker (and the other nodes of its cluster, to fail over to), and
    /// declares the queues of endpoints set up by <c>ConfigureEndpoints</c> with the configured queue type.
    /// The bus start is awaited with a deadline so that an unreachable broker stops the service with an
    /// error instead of leaving it half started.
    /// </summary>
    public static void UsePipelineRabbitMq(this IBusRegistrationConfigurator bus,
        Action<IBusRegistrationContext, IRabbitMqBusFactoryConfigurator> configure)
    {
        bus.AddConfigureEndpointsCallback((context, _, endpoint) =>
        {
            if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit)
            {
                rabbit.UsePipelineQueueType(context);
            }
        });
        bus.UsingRabbitMq((context, cfg) =>
        {
            var options = context.GetRequiredService<IOptions<RabbitMqOptions>>().Value;
            var connects = 0;
            cfg.Host(options.Uri!, host =>
            {
                host.Heartbeat(options.Heartbeat);
                host.OnRefreshConnectionFactory = async _ =>
                {
                    if (Interlocked.Increment(ref connects) > 1)
                    {
                        await Task.Delay(options.ReconnectDelay);
                    }
                };
                if (options.Nodes() is { Count: > 1 } nodes)
                {
                    host.UseCluster(cluster =>
                    {
                        foreach (var node in nodes)
                        {
                            cluster.Node(node);
                        }
                    });
                }
            });
            configure(context, cfg);
        });
    }

    /// <summary>
    /// Declares a pipeline queue with <see cref="RabbitMqOptions.QueueTypeInUse"/>; its <c>_error</c> queue takes
    /// the same type. For endpoints set up by hand; <see cref="UsePipelineRabbitMq"/> does it for the others.
    /// </summary>
    public static void UsePipelineQueueType(this IRabbitMqReceiveEndpointConfigurator endpoint, IServiceProvider services)
    {
        if (services.GetRequiredService<IOptions<RabbitMqOptions>>().Value.QueueTypeInUse() == QueueType.Quorum)
        {
            endpoint.SetQuorumQueue();
        }
    }

    /// <summary>Makes the host wait for the broker connection when it starts.</summary>
    public static IServiceCollection AddBusStartDeadline(this IServiceCollection services, TimeSpan deadline)
    {
        services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = deadline;
            o.StopTimeout = TimeSpan.FromSeconds(30);
        });
        return services;
    }
}
