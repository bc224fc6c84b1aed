using System.Security.Cryptography;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

namespace Engram.Pipeline.Testing;

/// <summary>
/// RabbitMQ and PostgreSQL in containers, through Testcontainers, on the images <c>docker-compose.yml</c> names too (on
/// a machine with no image registry, the stand-ins of <see cref="DockerEngine.EnsureBaseImagesAsync"/>).
/// </summary>
internal sealed class ContainerServers : IAsyncDisposable
{
    private const ushort ManagementPort = 15672;
    private const string RabbitMqImage = "rabbitmq:3-management";
    private const string PostgresImage = "postgres:15";

    private readonly RabbitMqContainer _rabbitMq;
    private readonly PostgreSqlContainer _postgres;

    private ContainerServers(RabbitMqContainer rabbitMq, PostgreSqlContainer postgres)
    {
        _rabbitMq = rabbitMq;
        _postgres = postgres;
    }

    public ServerEndpoints Endpoints => new(
        new Uri(_rabbitMq.GetConnectionString()),
        new UriBuilder(Uri.UriSchemeHttp, _rabbitMq.Hostname, _rabbitMq.GetMappedPublicPort(ManagementPort)).Uri,
        _postgres.GetConnectionString());

    /// <summary>Starts both containers.</summary>
    /// <exception cref="InvalidOperationException">An image is not on the engine: one line saying so, not a pull that may hang.</exception>
    public static async Task<ContainerServers> StartAsync()
    {
        foreach (var image in new[] { RabbitMqImage, PostgresImage })
        {
            if (!await DockerEngine.HasImageAsync(image))
            {
                throw new InvalidOperationException(
                    $"the engine has no {image} image (where no registry answers, infra/containers/local-images.sh builds one)");
            }
        }
        await DockerEngine.ConfigureTestcontainersAsync();
        var rabbitMq = new RabbitMqBuilder(RabbitMqImage)
            .WithUsername("engram")
            .WithPassword(RandomPassword())
            .WithPortBinding(ManagementPort, assignRandomHostPort: true)
            .Build();
        var postgres = new PostgreSqlBuilder(PostgresImage)
            // The module passes server options (-c fsync=off, …) as the command: name the server first, as both the
            // public image's entrypoint and the stand-in's understand.
            .WithEntrypoint("docker-entrypoint.sh", "postgres")
            .WithUsername("postgres")
            .WithPassword(RandomPassword())
            .WithDatabase("postgres")
            .Build();
        var servers = new ContainerServers(rabbitMq, postgres);
        try
        {
            await Task.WhenAll(rabbitMq.StartAsync(), postgres.StartAsync());
            return servers;
        }
        catch
        {
            await servers.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _rabbitMq.DisposeAsync();
        await _postgres.DisposeAsync();
    }

    private static string RandomPassword() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
}
