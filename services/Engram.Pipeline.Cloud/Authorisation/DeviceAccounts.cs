using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Engram.Pipeline.Cloud.Storage.Postgres;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Hosting;
using MassTransit.RabbitMqTransport;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Engram.Pipeline.Cloud.Authorisation;

/// <summary>
/// Gives devices their own RabbitMQ accounts, or takes them away, with an administrator's account:
/// <list type="bullet">
/// <item>the user, named like the device (the cloud checks a message's AMQP user_id against the deviceId it names);</item>
/// <item>its <see cref="DevicePermissions"/> on the virtual host;</item>
/// <item>the bindings an own account may not make itself: its push and pull exchanges to <c>engram-push</c>
/// and <c>engram-pull</c>, and <c>TargetAdvanced</c> to its queue's exchange;</item>
/// <item>its grants in <c>cloud_device_grants</c>: the targets it may push to and pull from.</item>
/// </list>
/// Every step is idempotent: running it again changes the password and adds targets.
/// </summary>
public sealed class DeviceAccounts : IAsyncDisposable
{
    private readonly HttpClient _management;
    private readonly string _vhost;
    private readonly NpgsqlDataSource _cloud;

    /// <param name="broker">An administrator's AMQP URI; its virtual host is the devices'.</param>
    /// <param name="management">The RabbitMQ management API's base URI.</param>
    /// <param name="cloudDb">The cloud database, as a role that may write <c>cloud_device_grants</c> (its owner).</param>
    public DeviceAccounts(Uri broker, Uri management, string cloudDb)
    {
        var path = broker.AbsolutePath.TrimStart('/');
        _vhost = Uri.EscapeDataString(path.Length == 0 ? "/" : Uri.UnescapeDataString(path));
        var password = Uri.UnescapeDataString(broker.UserInfo.Split(':', 2) is [_, var p] ? p : "");
        _management = new HttpClient
        {
            BaseAddress = management.AbsoluteUri.EndsWith('/') ? management : new Uri(management.AbsoluteUri + "/"),
            Timeout = TimeSpan.FromSeconds(30),
        };
        _management.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{RabbitMqOptions.UserName(broker)}:{password}")));
        _cloud = NpgsqlDataSource.Create(cloudDb);
    }

    /// <summary>The exchange MassTransit publishes <see cref="TargetAdvanced"/> to.</summary>
    public static string TargetAdvancedExchange { get; } =
        new RabbitMqMessageNameFormatter().GetMessageName(typeof(TargetAdvanced)).ToString();

    /// <summary>Creates (or updates) the device's account and grants it <paramref name="targets"/>.</summary>
    public async Task<DevicePermissions> AddAsync(string deviceId, string password, IReadOnlyCollection<string> targets,
        CancellationToken ct)
    {
        var permissions = DevicePermissions.For(deviceId);
        ArgumentException.ThrowIfNullOrEmpty(password);
        await PutAsync($"api/users/{Escape(deviceId)}", new { password, tags = "" }, ct);
        await PutAsync($"api/permissions/{_vhost}/{Escape(deviceId)}",
            new { configure = permissions.Configure, write = permissions.Write, read = permissions.Read }, ct);

        // Declared as MassTransit declares them (durable fanout), so whoever comes first, nothing conflicts.
        var queueExchange = WireNames.DeviceQueue(deviceId);
        string[] exchanges =
        [
            WireNames.PushQueue, WireNames.PullQueue, TargetAdvancedExchange,
            queueExchange, WireNames.DevicePushExchange(deviceId), WireNames.DevicePullExchange(deviceId),
        ];
        foreach (var exchange in exchanges)
        {
            await PutAsync($"api/exchanges/{_vhost}/{Escape(exchange)}",
                new { type = "fanout", durable = true, auto_delete = false, @internal = false, arguments = new { } }, ct);
        }
        await BindAsync(TargetAdvancedExchange, queueExchange, ct);
        await BindAsync(WireNames.DevicePushExchange(deviceId), WireNames.PushQueue, ct);
        await BindAsync(WireNames.DevicePullExchange(deviceId), WireNames.PullQueue, ct);

        await new PostgresSchema(_cloud, NullLogger<PostgresSchema>.Instance).EnsureCreatedAsync(ct);
        await using var grant = _cloud.CreateCommand("""
            INSERT INTO cloud_device_grants (target_key, device_id)
            SELECT target, @device FROM unnest(@targets) AS target
            ON CONFLICT DO NOTHING
            """);
        grant.Parameters.AddWithValue("device", deviceId);
        grant.Parameters.AddWithValue("targets", targets.ToArray());
        await grant.ExecuteNonQueryAsync(ct);
        return permissions;
    }

    /// <summary>
    /// Deletes the device's user (RabbitMQ closes its open connections) and withdraws its grants. Its
    /// queue and exchanges stay, so an operator may still read what is in them.
    /// </summary>
    public async Task RemoveAsync(string deviceId, CancellationToken ct)
    {
        using (var response = await _management.DeleteAsync($"api/users/{Escape(deviceId)}", ct))
        {
            if (response.StatusCode != HttpStatusCode.NotFound)
            {
                await EnsureSuccessAsync(response, $"delete user '{deviceId}'", ct);
            }
        }
        await using var revoke = _cloud.CreateCommand("DELETE FROM cloud_device_grants WHERE device_id = @device");
        revoke.Parameters.AddWithValue("device", deviceId);
        await revoke.ExecuteNonQueryAsync(ct);
    }

    public async ValueTask DisposeAsync()
    {
        _management.Dispose();
        await _cloud.DisposeAsync();
    }

    private Task BindAsync(string source, string destination, CancellationToken ct) =>
        PostAsync($"api/bindings/{_vhost}/e/{Escape(source)}/e/{Escape(destination)}", new { routing_key = "", arguments = new { } }, ct);

    private async Task PutAsync(string path, object body, CancellationToken ct)
    {
        using var response = await _management.PutAsJsonAsync(path, body, ct);
        await EnsureSuccessAsync(response, $"PUT {path}", ct);
    }

    private async Task PostAsync(string path, object body, CancellationToken ct)
    {
        using var response = await _management.PostAsJsonAsync(path, body, ct);
        await EnsureSuccessAsync(response, $"POST {path}", ct);
    }

    private static string Escape(string name) => Uri.EscapeDataString(name);

    private static async Task EnsureSuccessAsync(HttpResponseMessage response, string action, CancellationToken ct)
    {
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException(
                $"The RabbitMQ management API refused to {action}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
        }
    }
}
