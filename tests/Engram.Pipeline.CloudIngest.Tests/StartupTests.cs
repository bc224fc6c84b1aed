using System.ComponentModel.DataAnnotations;
using System.Net.Security;
using Engram.Pipeline.Cloud;
using Engram.Pipeline.Hosting;
using MassTransit.RabbitMqTransport.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Engram.Pipeline.CloudIngest.Tests;

public sealed class When_the_cloud_database_is_not_configured
{
    [Fact]
    public void The_service_refuses_to_start_and_names_the_setting()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["RabbitMq:Uri"] = "amqp://user:pass@localhost:5672/",
        }).Build();

        var error = Assert.Throws<InvalidOperationException>(() => new ServiceCollection().AddCloudIngest(configuration));

        Assert.Contains("ConnectionStrings__CloudDb", error.Message);
    }
}

public sealed class When_the_broker_is_configured
{
    [Theory]
    [InlineData("amqp://localhost:5672/", "must name a user and password")]
    [InlineData("amqp://guest@localhost:5672/", "must name a user and password")]
    [InlineData("http://user:pass@localhost/", "amqp:// or amqps://")]
    public void A_uri_without_credentials_or_of_another_scheme_is_refused(string uri, string problem)
    {
        var results = new List<ValidationResult>();
        var options = new RabbitMqOptions { Uri = new Uri(uri) };

        Assert.False(Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true));

        Assert.Contains(problem, Assert.Single(results).ErrorMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void Amqps_on_any_port_checks_the_brokers_certificate_chain_and_name()
    {
        var options = new RabbitMqOptions { Uri = new Uri("amqps://user:pass@broker.example:15671/") };
        var host = new RabbitMqHostConfigurator(options.Uri);

        host.UseSsl(tls => TransportExtensions.ConfigureTls(tls, options));

        Assert.True(host.Settings.Ssl);
        Assert.Equal("broker.example", host.Settings.SslServerName);
        // MassTransit's default accepts RemoteCertificateChainErrors: an untrusted certificate.
        Assert.Equal(SslPolicyErrors.None, host.Settings.AcceptablePolicyErrors);
    }
}

public sealed class When_the_broker_settings_name_a_cluster_and_a_queue_type
{
    [Fact]
    public void The_uri_node_comes_first_then_the_others_and_the_type_is_read_in_any_case()
    {
        var options = Bind(new()
        {
            ["RabbitMq:Uri"] = "amqp://user:pass@rabbit1:5673/engram",
            ["RabbitMq:ClusterNodes"] = " rabbit2:5673, rabbit3 ,",
            ["RabbitMq:QueueType"] = "quorum",
        });

        Assert.Equal(["rabbit1:5673", "rabbit2:5673", "rabbit3"], options.Nodes());
        Assert.Equal(QueueType.Quorum, options.QueueTypeInUse());
    }

    [Theory]
    [InlineData(null, null, QueueType.Classic)]
    [InlineData("", "", QueueType.Classic)] // as docker-compose passes them when .env leaves them empty
    [InlineData("rabbit2", null, QueueType.Quorum)]
    [InlineData("rabbit2", "Classic", QueueType.Classic)]
    [InlineData(null, "QUORUM", QueueType.Quorum)]
    public void Queues_are_quorum_on_a_cluster_unless_the_type_is_set(string? clusterNodes, string? queueType, QueueType inUse)
    {
        var options = Bind(new()
        {
            ["RabbitMq:Uri"] = "amqp://user:pass@rabbit1/",
            ["RabbitMq:ClusterNodes"] = clusterNodes,
            ["RabbitMq:QueueType"] = queueType,
        });

        Assert.Equal(inUse, options.QueueTypeInUse());
    }

    [Fact]
    public void A_malformed_node_is_named_at_start_up()
    {
        var error = Assert.Throws<OptionsValidationException>(() => Bind(new()
        {
            ["RabbitMq:Uri"] = "amqp://user:pass@rabbit1/",
            ["RabbitMq:ClusterNodes"] = "rabbit2:5672,rabbit3:amqp",
        }));

        Assert.Contains("'rabbit3:amqp'", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("RabbitMq:Heartbeat", "00:00:00")]
    [InlineData("RabbitMq:ReconnectDelay", "00:05:00")]
    public void A_duration_out_of_range_is_named_at_start_up(string setting, string value)
    {
        var error = Assert.Throws<OptionsValidationException>(() => Bind(new()
        {
            ["RabbitMq:Uri"] = "amqp://user:pass@rabbit1/",
            [setting] = value,
        }));

        Assert.Contains(setting, error.Message, StringComparison.Ordinal);
    }

    private static RabbitMqOptions Bind(Dictionary<string, string?> settings)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        services.AddRabbitMqOptions();
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<RabbitMqOptions>>().Value;
    }
}

public sealed class When_a_queue_exists_with_the_other_type
{
    [Fact]
    public void The_start_up_error_gives_the_brokers_reason_and_what_to_do()
    {
        // What MassTransit's bus start throws when RabbitMQ refuses to redeclare a classic queue as quorum.
        var refused = new OperationInterruptedException(new ShutdownEventArgs(ShutdownInitiator.Peer, 406,
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'engram-push' in vhost '/': " +
            "received the value 'quorum' of type 'longstr' but current is none"));

        var description = ServiceRunner.Describe(new InvalidOperationException("ReceiveTransport faulted: engram@rabbit1:5672/", refused));

        Assert.Contains("inequivalent arg 'x-queue-type' for queue 'engram-push'", description, StringComparison.Ordinal);
        Assert.Contains("Changing the queue type", description, StringComparison.Ordinal);
    }

    [Fact]
    public void Other_refusals_get_no_such_advice()
    {
        var refused = new OperationInterruptedException(new ShutdownEventArgs(ShutdownInitiator.Peer, 406,
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'engram-push' in vhost '/'"));

        Assert.DoesNotContain("queue type", ServiceRunner.Describe(refused), StringComparison.Ordinal);
    }
}
