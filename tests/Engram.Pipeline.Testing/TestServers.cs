using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace Engram.Pipeline.Testing;

/// <summary>
/// A RabbitMQ broker (with the management API) and a PostgreSQL server shared by the tests of one
/// process, plus helpers that give each test class its own virtual host and database on them.
/// </summary>
/// <remarks>
/// <see cref="StartAsync"/> tries, in order: instances named by the environment
/// (<c>ENGRAM_TEST_RABBITMQ_URI</c>, <c>ENGRAM_TEST_RABBITMQ_MANAGEMENT_URI</c>, <c>ENGRAM_TEST_CLOUDDB</c>),
/// Testcontainers when a Docker engine answers, and finally private servers started from the locally
/// installed binaries by <c>infra/local/up.sh</c>.
/// </remarks>
public sealed class TestServers : IAsyncDisposable
{
    private readonly IAsyncDisposable? _owner;
    private readonly NpgsqlDataSource _adminDataSource;
    private readonly HttpClient _management;
    private bool _disposed;

    private TestServers(ServerEndpoints endpoints, string source, IAsyncDisposable? owner)
    {
        RabbitMqUri = endpoints.RabbitMqUri;
        ManagementUri = endpoints.ManagementUri;
        CloudDbAdminConnectionString = endpoints.CloudDbAdminConnectionString;
        var credentials = RabbitMqUri.UserInfo.Split(':', 2);
        RabbitUser = Uri.UnescapeDataString(credentials[0]);
        RabbitPassword = credentials.Length > 1 ? Uri.UnescapeDataString(credentials[1]) : "";
        Source = source;
        _owner = owner;
        _adminDataSource = NpgsqlDataSource.Create(CloudDbAdminConnectionString);
        _management = new HttpClient { BaseAddress = ManagementUri, Timeout = TimeSpan.FromSeconds(30) };
        _management.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{RabbitUser}:{RabbitPassword}")));
    }

    /// <summary>AMQP URI of the broker's default virtual host, with the administrator's credentials.</summary>
    public Uri RabbitMqUri { get; }

    /// <summary>Base URI of the RabbitMQ management HTTP API (no credentials).</summary>
    public Uri ManagementUri { get; }

    /// <summary>RabbitMQ administrator user name.</summary>
    public string RabbitUser { get; }

    /// <summary>RabbitMQ administrator password.</summary>
    public string RabbitPassword { get; }

    /// <summary>Npgsql connection string of a PostgreSQL superuser on the <c>postgres</c> database.</summary>
    public string CloudDbAdminConnectionString { get; }

    /// <summary>
    /// The environment variables that make <see cref="StartAsync"/> in another process (a benchmark, say) use these
    /// same servers.
    /// </summary>
    public IReadOnlyDictionary<string, string> EnvironmentVariables() =>
        EnvironmentServers.Variables(new ServerEndpoints(RabbitMqUri, ManagementUri, CloudDbAdminConnectionString));

    /// <summary>Where the servers came from: "environment", "testcontainers" or "local binaries".</summary>
    public string Source { get; }

    /// <summary>
    /// Servers of this test alone, from the local binaries, which it may stop and start again
    /// (<see cref="RestartAsync"/>): for fault injection, never shared.
    /// </summary>
    /// <param name="consumerTimeout">The broker's delivery acknowledgement timeout, when not its default.</param>
    public static async Task<TestServers> StartPrivateAsync(TimeSpan? consumerTimeout = null)
    {
        var local = LocalServers.Create(consumerTimeout);
        try
        {
            return new TestServers(await local.UpAsync(), "local binaries (private)", local);
        }
        catch
        {
            await local.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops one server of <see cref="StartPrivateAsync"/> (<c>rabbitmq</c> or <c>postgres</c>) and starts it again on the same data.</summary>
    public async Task RestartAsync(string server)
    {
        var local = _owner as LocalServers ?? throw new InvalidOperationException("Only servers from StartPrivateAsync can be restarted.");
        await local.StopAsync(server);
        await local.UpAsync();
    }

    /// <summary>Runs <c>rabbitmqctl</c> on the broker of <see cref="StartPrivateAsync"/> (to raise and clear its resource alarms, say).</summary>
    public Task RabbitMqCtlAsync(params string[] arguments) =>
        (_owner as LocalServers ?? throw new InvalidOperationException("Only the broker of StartPrivateAsync takes rabbitmqctl commands."))
        .RabbitMqCtlAsync(arguments);

    /// <summary>
    /// Servers in containers through Testcontainers, whatever the machine: a Docker engine is started and the images
    /// are provided (pulled, or built as stand-ins) when they are not there (<see cref="DockerEngine"/>).
    /// </summary>
    public static async Task<TestServers> StartInContainersAsync()
    {
        await DockerEngine.EnsureRunningAsync();
        await DockerEngine.EnsureBaseImagesAsync();
        var containers = await ContainerServers.StartAsync();
        return new TestServers(containers.Endpoints, "testcontainers", containers);
    }

    /// <summary>Finds or starts the servers.</summary>
    /// <exception cref="InvalidOperationException">No way of getting servers worked; the message says what was tried.</exception>
    public static async Task<TestServers> StartAsync()
    {
        if (EnvironmentServers.TryRead() is { } configured)
        {
            return new TestServers(configured, "environment", owner: null);
        }

        var attempts = new List<string> { $"environment: {EnvironmentServers.Description} not set" };
        if (await DockerEngine.AnswersAsync())
        {
            try
            {
                var containers = await ContainerServers.StartAsync();
                return new TestServers(containers.Endpoints, "testcontainers", containers);
            }
            catch (Exception exception) when (exception is not OutOfMemoryException)
            {
                attempts.Add($"testcontainers: {exception.Message}");
            }
        }
        else
        {
            attempts.Add("testcontainers: no Docker engine answered");
        }

        try
        {
            var local = LocalServers.Create();
            try
            {
                return new TestServers(await local.UpAsync(), "local binaries", local);
            }
            catch
            {
                await local.DisposeAsync();
                throw;
            }
        }
        catch (Exception exception) when (exception is not OutOfMemoryException)
        {
            attempts.Add($"local binaries: {exception.Message}");
        }

        throw new InvalidOperationException(
            "Could not get RabbitMQ and PostgreSQL servers for the tests. Tried:" + Environment.NewLine
            + string.Join(Environment.NewLine, attempts.Select(attempt => "- " + attempt)));
    }

    /// <summary>
    /// Creates a virtual host and grants the administrator full permissions on it.
    /// </summary>
    /// <returns>The AMQP URI (with the administrator's credentials) of the new virtual host.</returns>
    public async Task<Uri> CreateVirtualHostAsync(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var vhost = Uri.EscapeDataString(name);
        using (var response = await _management.PutAsJsonAsync($"api/vhosts/{vhost}", new { }))
        {
            await EnsureSuccessAsync(response, $"create virtual host '{name}'");
        }

        var permissions = new { configure = ".*", write = ".*", read = ".*" };
        using (var response = await _management.PutAsJsonAsync(
            $"api/permissions/{vhost}/{Uri.EscapeDataString(RabbitUser)}", permissions))
        {
            await EnsureSuccessAsync(response, $"grant {RabbitUser} permissions on virtual host '{name}'");
        }

        return new Uri(RabbitMqUri, vhost);
    }

    /// <summary>Deletes a virtual host and everything in it; does nothing if it does not exist.</summary>
    public async Task DeleteVirtualHostAsync(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        using var response = await _management.DeleteAsync($"api/vhosts/{Uri.EscapeDataString(name)}");
        if (response.StatusCode != HttpStatusCode.NotFound)
        {
            await EnsureSuccessAsync(response, $"delete virtual host '{name}'");
        }
    }

    /// <summary>GETs a management API path (e.g. <c>api/queues/vhost</c>) and parses the JSON answer.</summary>
    public async Task<JsonDocument> GetManagementAsync(string path)
    {
        using var response = await _management.GetAsync(path);
        await EnsureSuccessAsync(response, $"GET {path}");
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>Publishes a raw message to a queue through the default exchange, as any AMQP client could.</summary>
    public Task PublishRawAsync(string virtualHost, string queue, string body, string contentType) =>
        PublishRawAsync(virtualHost, queue, Encoding.UTF8.GetBytes(body), contentType, messageId: null);

    /// <summary>
    /// Publishes raw bytes to a queue through the default exchange, as any AMQP client could, with the
    /// given content type (none when null) and AMQP message id (none when null).
    /// </summary>
    /// <exception cref="InvalidOperationException">The broker refused the message or had no such queue.</exception>
    public async Task PublishRawAsync(string virtualHost, string queue, byte[] body, string? contentType, string? messageId)
    {
        var properties = new Dictionary<string, object> { ["delivery_mode"] = 2 };
        if (contentType is not null)
        {
            properties["content_type"] = contentType;
        }
        if (messageId is not null)
        {
            properties["message_id"] = messageId;
        }
        var message = new
        {
            properties,
            routing_key = queue,
            payload = Convert.ToBase64String(body),
            payload_encoding = "base64",
        };
        using var response = await _management.PostAsJsonAsync($"api/exchanges/{Uri.EscapeDataString(virtualHost)}/amq.default/publish", message);
        await EnsureSuccessAsync(response, $"publish to {queue}");
        using var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        if (!answer.RootElement.GetProperty("routed").GetBoolean())
        {
            throw new InvalidOperationException($"The message published to '{queue}' was not routed: the queue does not exist.");
        }
    }

    /// <summary>
    /// Takes up to <paramref name="count"/> messages off a queue (they are gone afterwards), each as the
    /// management API shows it: <c>properties</c> (headers included) and the first 200 characters of <c>payload</c>.
    /// </summary>
    public async Task<IReadOnlyList<JsonElement>> TakeMessagesAsync(string virtualHost, string queue, int count)
    {
        var request = new { count, ackmode = "ack_requeue_false", encoding = "auto", truncate = 200 };
        using var response = await _management.PostAsJsonAsync(
            $"api/queues/{Uri.EscapeDataString(virtualHost)}/{Uri.EscapeDataString(queue)}/get", request);
        await EnsureSuccessAsync(response, $"take messages from '{queue}'");
        using var messages = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return messages.RootElement.EnumerateArray().Select(message => message.Clone()).ToList();
    }

    /// <summary>
    /// Waits until a queue holds messages, then deletes them all, as a broker losing them would.
    /// </summary>
    /// <returns>How many messages the management API counted (its counts lag the queue by a few seconds).</returns>
    public async Task<long> PurgeQueueAsync(string virtualHost, string queue, TimeSpan deadline)
    {
        var path = $"api/queues/{Uri.EscapeDataString(virtualHost)}/{Uri.EscapeDataString(queue)}";
        long waiting = 0;
        await Condition.WaitUntilAsync(async () =>
        {
            using var details = JsonDocument.Parse(await _management.GetStringAsync(path));
            waiting = details.RootElement.TryGetProperty("messages", out var messages) ? messages.GetInt64() : 0;
            return waiting > 0;
        }, deadline, $"queue '{queue}' holds messages", interval: TimeSpan.FromMilliseconds(200));
        using var response = await _management.DeleteAsync($"{path}/contents");
        await EnsureSuccessAsync(response, $"purge queue '{queue}'");
        return waiting;
    }

    /// <summary>Creates an empty database.</summary>
    /// <returns>A connection string for the new database, with the administrator's credentials.</returns>
    public async Task<string> CreateDatabaseAsync(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        await using var command = _adminDataSource.CreateCommand($"CREATE DATABASE {QuoteIdentifier(name)}");
        await command.ExecuteNonQueryAsync();
        return DatabaseConnectionString(name);
    }

    /// <summary>Drops a database, closing any connections to it; does nothing if it does not exist.</summary>
    public async Task DropDatabaseAsync(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        // Pooled connections would be killed by FORCE anyway; drop them so later opens do not fail.
        await using (var connection = new NpgsqlConnection(DatabaseConnectionString(name)))
        {
            NpgsqlConnection.ClearPool(connection);
        }

        await using var command = _adminDataSource.CreateCommand(
            $"DROP DATABASE IF EXISTS {QuoteIdentifier(name)} WITH (FORCE)");
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Stops whatever <see cref="StartAsync"/> started; instances named by the environment are left alone.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _management.Dispose();
        await _adminDataSource.DisposeAsync();
        if (_owner is not null)
        {
            await _owner.DisposeAsync();
        }
    }

    private string DatabaseConnectionString(string name) =>
        new NpgsqlConnectionStringBuilder(CloudDbAdminConnectionString) { Database = name }.ConnectionString;

    private static string QuoteIdentifier(string name) => "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    internal static async Task EnsureSuccessAsync(HttpResponseMessage response, string action)
    {
        if (!response.IsSuccessStatusCode)
        {
            var body = await response.Content.ReadAsStringAsync();
            throw new InvalidOperationException(
                $"RabbitMQ management API could not {action}: {(int)response.StatusCode} {response.ReasonPhrase} {body}");
        }
    }
}
