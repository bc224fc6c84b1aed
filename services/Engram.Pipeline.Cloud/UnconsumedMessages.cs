using MassTransit;
using MassTransit.Middleware;
using MassTransit.Middleware.Rescue;

namespace Engram.Pipeline.Cloud;

public static class UnconsumedMessages
{
    /// <summary>
    /// A message no consumer of the endpoint takes (its envelope names a type nobody here consumes, or
    /// none) goes to the endpoint's <c>_error</c> queue, with a <see cref="MessageNotConsumedException"/>
    /// in its MT-Fault-* headers, where an operator looks for what could not be handled.
    /// MassTransit's default moves it to a <c>_skipped</c> queue that says nothing about why; its
    /// ThrowOnSkippedMessages would make RabbitMQ redeliver it for ever.
    /// </summary>
    public static void MoveUnconsumedToErrorQueue(this IReceiveEndpointConfigurator endpoint) =>
        endpoint.ConfigureDeadLetter(pipe => pipe.UseFilter(new ToErrorQueueFilter()));

    private sealed class ToErrorQueueFilter : IFilter<ReceiveContext>
    {
        private readonly ErrorTransportFilter _errorTransport = new();

        public Task Send(ReceiveContext context, IPipe<ReceiveContext> next)
        {
            var exception = new MessageNotConsumedException(context.InputAddress,
                "No consumer on this queue takes a message of the type its envelope names (messageType).");
            return ((IFilter<ExceptionReceiveContext>)_errorTransport).Send(
                new RescueExceptionReceiveContext(context, exception), Pipe.Empty<ExceptionReceiveContext>());
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("unconsumed-to-error-queue");
    }
}
