using MassTransit;
using Npgsql;
using RabbitMQ.Client.Exceptions;

namespace Engram.Pipeline.Cloud;

public static class CloudRetry
{
    /// <summary>
    /// Retries a message in place, for as long as it takes, while the cloud database or the broker cannot do its part:
    /// the database away, refusing writes (read only, a full disk) or too slow (a statement that waited on a lock past
    /// its timeout), or the broker not taking a reply or event after the batch committed (the resend is all duplicates,
    /// answered with the same cloud seqs). None of these is the message's fault, so none ends in the <c>_error</c>
    /// queue however long it lasts: the consumer holds its messages meanwhile, the rest wait in the queue, and the
    /// delays grow to 10 s, with jitter. Anything else goes at once to the endpoint's <c>_error</c> queue with its
    /// exception, never acknowledged and forgotten.
    /// </summary>
    public static void UseCloudRetry(this IReceiveEndpointConfigurator endpoint) =>
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<NpgsqlException>(e => e.IsTransient);
            r.Handle<PostgresException>(e => e.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected
                or PostgresErrorCodes.ReadOnlySqlTransaction);
            r.Handle<ConnectionException>();
            r.Handle<TransportException>();
            r.Handle<AlreadyClosedException>();
            r.Handle<OperationInterruptedException>();
            r.Exponential(int.MaxValue, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        });
}
