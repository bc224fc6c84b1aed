using Engram.Pipeline.CloudIngest.Storage;
using Engram.Pipeline.Contracts;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.CloudIngest.Pull;

/// <summary>
/// <c>engram-pull</c>: read-only, so any number of consumers may serve it; transient failures are retried,
/// and a message of a type nobody consumes here goes to <c>engram-pull_error</c> with the reason.
/// </summary>
public sealed class PullMutationsConsumerDefinition : ConsumerDefinition<PullMutationsConsumer>
{
    private readonly IngestOptions _options;

    public PullMutationsConsumerDefinition(IOptions<IngestOptions> options)
    {
        _options = options.Value;
        EndpointName = WireNames.PullQueue;
        ConcurrentMessageLimit = _options.ConcurrentMessageLimit;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<PullMutationsConsumer> consumerConfigurator, IRegistrationContext context)
    {
        endpointConfigurator.PrefetchCount = _options.ConcurrentMessageLimit * 2;
        endpointConfigurator.UseCloudDatabaseRetry();
        endpointConfigurator.MoveUnconsumedToErrorQueue();
    }
}
