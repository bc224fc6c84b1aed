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
    /// Points the bus at the configured broker (over TLS for <c>amqps://</c>). The bus start is awaited
    /// with a deadline so that an unreachable broker stops the service with an error instead of leaving
    /// it half started.
    /// </summary>
    public static void UsePipelineRabbitMq(this IBusRegistrationConfigurator bus,
        Action<IBusRegistrationContext, IRabbitMqBusFactoryConfigurator> configure)
    {
        bus.UsingRabbitMq((context, cfg) =>
        {
            var options = context.GetRequiredService<IOptions<RabbitMqOptions>>().Value;
            cfg.Host(options.Uri!, host =>
            {
                // MassTransit turns TLS on by itself only on port 5671; amqps:// means TLS on any port.
                if (options.Uri!.Scheme == "amqps")
                {
                    host.UseSsl(tls => ConfigureTls(tls, options));
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
