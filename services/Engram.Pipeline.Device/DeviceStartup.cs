using Engram.Pipeline.Device.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Device;

/// <summary>Opens (or creates) the device database before the bus and the publisher start.</summary>
public sealed class DeviceStartup(
    DeviceDatabase database, DeviceIdentity identity, IOptions<DeviceOptions> options, TimeProvider clock,
    ILogger<DeviceStartup> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            identity.Assign(await database.InitialiseAsync(options.Value.Id, clock, cancellationToken));
        }
        catch (SqliteException e)
        {
            throw new InvalidOperationException($"Cannot open the device database {database.Path}: {e.Message}", e);
        }
        log.LogInformation("Device {DeviceId} syncing target {Target} from {Database}",
            identity.DeviceId, identity.Target, database.Path);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
