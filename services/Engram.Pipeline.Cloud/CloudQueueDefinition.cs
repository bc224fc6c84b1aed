using MassTransit;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Cloud;

/// <summary>A consumer of one of the cloud's shared queues.</summary>
public interface ICloudQueueConsumer : IConsumer
{
    /// <summary>The queue it consumes (<c>engram-push</c> or <c>engram-pull</c>).</summary>
    static abstract string Queue { get; }
}

/// <summary>
/// <c>engram-push</c> and <c>engram-pull</c>: any number of ingest processes compete for each. What a consumer sends
/// (the reply, <c>TargetAdvanced</c>) goes out after its work, together, through MassTransit's in-memory outbox;
/// transient database and broker failures, that sending included, are retried in place (<see cref="CloudRetry"/>);
/// anything else, after the retries, goes to the queue's <c>_error</c> queue with its exception, never acknowledged and
/// forgotten. So does a message of a type nobody consumes there.
/// </summary>
public sealed class CloudQueueDefinition<TConsumer> : ConsumerDefinition<TConsumer>
    where TConsumer : class, ICloudQueueConsumer
{
    private readonly IngestOptions _options;

    public CloudQueueDefinition(IOptions<IngestOptions> options)
    {
        _options = options.Value;
        EndpointName = TConsumer.Queue;
        ConcurrentMessageLimit = _options.ConcurrentMessageLimit;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<TConsumer> consumerConfigurator, IRegistrationContext context)
    {
        endpointConfigurator.PrefetchCount = _options.ConcurrentMessageLimit * 2;
        endpointConfigurator.UseCloudRetry();
        endpointConfigurator.UseInMemoryOutbox(context);
        endpointConfigurator.MoveUnconsumedToErrorQueue();
    }
}
