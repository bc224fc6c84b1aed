using MassTransit;
using Npgsql;
using RabbitMQ.Client.Exceptions;

namespace Engram.Pipeline.Cloud;

public static class CloudRetry
{
    /// <summary>
    /// Retries a message in place when the cloud database or the broker failed transiently: a reply or event the broker
    /// did not take after the batch committed is sent again (the resend is all duplicates, answered with the same
    /// cloud seqs), never a committed batch in the <c>_error</c> queue. Anything else goes, after the retries, to the
    /// endpoint's <c>_error</c> queue with its exception, never acknowledged and forgotten.
    /// </summary>
    public static void UseCloudRetry(this IReceiveEndpointConfigurator endpoint) =>
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<NpgsqlException>(e => e.IsTransient);
            r.Handle<PostgresException>(e => e.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected);
            r.Handle<ConnectionException>();
            r.Handle<TransportException>();
            r.Handle<AlreadyClosedException>();
            r.Handle<OperationInterruptedException>();
            r.Exponential(10, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        });
}
