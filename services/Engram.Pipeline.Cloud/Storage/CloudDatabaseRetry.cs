using MassTransit;
using Npgsql;

namespace Engram.Pipeline.Cloud.Storage;

public static class CloudDatabaseRetry
{
    /// <summary>
    /// Retries a message in place when the cloud database failed transiently; anything else goes,
    /// after that, to the endpoint's <c>_error</c> queue with its exception, never acknowledged and forgotten.
    /// </summary>
    public static void UseCloudDatabaseRetry(this IReceiveEndpointConfigurator endpoint) =>
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<NpgsqlException>(e => e.IsTransient);
            r.Handle<PostgresException>(e => e.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected);
            r.Exponential(10, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        });
}
