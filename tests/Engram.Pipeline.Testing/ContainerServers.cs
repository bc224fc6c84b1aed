using System.Security.Cryptography;
using DotNet.Testcontainers.Configurations;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

namespace Engram.Pipeline.Testing;

/// <summary>RabbitMQ and PostgreSQL in containers, when a Docker engine answers.</summary>
internal sealed class ContainerServers : IAsyncDisposable
{
    private const ushort ManagementPort = 15672;
    private static readonly TimeSpan _detectionTimeout = TimeSpan.FromSeconds(10);

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

    /// <summary>Uses Testcontainers' own endpoint detection (which pings the engine), bounded in time.</summary>
    public static async Task<bool> IsDockerAvailableAsync()
    {
        try
        {
            return await Task.Run(() => TestcontainersSettings.OS.DockerEndpointAuthConfig is not null)
                .WaitAsync(_detectionTimeout);
        }
        catch (Exception exception) when (exception is not OutOfMemoryException)
        {
            // A timeout, or a broken Docker configuration: either way there is no engine to use.
            return false;
        }
    }

    public static async Task<ContainerServers> StartAsync()
    {
        var rabbitMq = new RabbitMqBuilder("rabbitmq:3.13-management")
            .WithUsername("engram")
            .WithPassword(RandomPassword())
            .WithPortBinding(ManagementPort, assignRandomHostPort: true)
            .Build();
        var postgres = new PostgreSqlBuilder("postgres:15")
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
