using System.ComponentModel.DataAnnotations;
using System.Net.Security;
using Engram.Pipeline.Hosting;
using MassTransit.RabbitMqTransport.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

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
