using System.Net.Security;
using System.Security.Authentication;
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
    /// Points the bus at the configured broker (over TLS for <c>amqps://</c>; and the other nodes of its
    /// cluster, to fail over to), and declares the queues of endpoints set up by <c>ConfigureEndpoints</c>
    /// with the configured queue type. The bus start is awaited with a deadline so that an unreachable
    /// broker stops the service with an error instead of leaving it half started.
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
                // MassTransit turns TLS on by itself only on port 5671; amqps:// means TLS on any port.
                if (options.Uri!.Scheme == "amqps")
                {
                    host.UseSsl(tls => ConfigureTls(tls, options));
                }
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
    /// TLS to the broker: the broker's certificate must chain to a trusted root and name the URI's host.
    /// MassTransit's own default accepts an untrusted chain, which would let anyone in the middle.
    /// </summary>
    public static void ConfigureTls(IRabbitMqSslConfigurator tls, RabbitMqOptions options)
    {
        tls.ServerName = options.Uri!.Host;
        tls.Protocol = SslProtocols.Tls12 | SslProtocols.Tls13;
        tls.EnforcePolicyErrors(SslPolicyErrors.RemoteCertificateChainErrors | SslPolicyErrors.RemoteCertificateNameMismatch
            | SslPolicyErrors.RemoteCertificateNotAvailable);
        tls.CertificatePath = options.ClientCertificatePath;
        tls.CertificatePassphrase = options.ClientCertificatePassphrase;
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
