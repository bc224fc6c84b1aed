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
