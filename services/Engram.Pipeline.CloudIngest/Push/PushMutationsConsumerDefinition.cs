using Engram.Pipeline.CloudIngest.Storage;
using Engram.Pipeline.Contracts;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.CloudIngest.Push;

/// <summary>
/// <c>engram-push</c>: any number of ingest processes compete for it. Transient database failures
/// are retried in place; anything else, after the retries, goes to <c>engram-push_error</c> with its
/// exception, never acknowledged and forgotten. So does a message of a type nobody consumes here.
/// </summary>
public sealed class PushMutationsConsumerDefinition : ConsumerDefinition<PushMutationsConsumer>
{
    private readonly IngestOptions _options;

    public PushMutationsConsumerDefinition(IOptions<IngestOptions> options)
    {
        _options = options.Value;
        EndpointName = WireNames.PushQueue;
        ConcurrentMessageLimit = _options.ConcurrentMessageLimit;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<PushMutationsConsumer> consumerConfigurator, IRegistrationContext context)
    {
        endpointConfigurator.PrefetchCount = _options.ConcurrentMessageLimit * 2;
        endpointConfigurator.UseCloudDatabaseRetry();
        endpointConfigurator.MoveUnconsumedToErrorQueue();
    }
}
