using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client.Exceptions;

namespace Engram.Pipeline.Hosting;

public static class ServiceRunner
{
    /// <summary>
    /// Runs a service host and turns a failed start (bad configuration, unreachable broker or
    /// database) into one clear log line and exit code 1 instead of a crash with a stack trace.
    /// </summary>
    public static async Task<int> RunServiceAsync(this IHost host)
    {
        using (host)
        {
            var log = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Engram.Pipeline");
            try
            {
                await host.StartAsync();
            }
#pragma warning disable CA1031 // Any start-up failure ends the process; the reason is logged.
            catch (Exception e)
#pragma warning restore CA1031
            {
                log.LogCritical("Start-up failed: {Reason}", Describe(e));
                return 1;
            }
            if (host.Services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>() is { Addresses.Count: > 0 } server)
            {
                log.LogInformation("Health and metrics on {Addresses}", string.Join(", ", server.Addresses));
            }
            await host.WaitForShutdownAsync();
            return 0;
        }
    }

    /// <summary>The messages of an exception and its causes, and what to do when they alone do not say it.</summary>
    public static string Describe(Exception e)
    {
        var messages = new List<string>();
        var advice = "";
        for (var current = e; current is not null; current = current.InnerException)
        {
            messages.Add(current.Message);
            if (current is OperationInterruptedException { ShutdownReason: { ReplyCode: PreconditionFailed } reason }
                && reason.ReplyText.Contains("'x-queue-type'", StringComparison.Ordinal))
            {
                advice = ". The queue exists with another type than RabbitMq:QueueType asks for, and RabbitMQ cannot " +
                         "change a queue's type: set RabbitMq:QueueType to the queue's type, or move the queue's " +
                         "messages and delete it (README, \"Changing the queue type\")";
            }
        }
        return string.Join(" <- ", messages.Distinct()) + advice;
    }

    /// <summary>AMQP's reply code for a declaration that contradicts the existing entity.</summary>
    private const ushort PreconditionFailed = 406;
}
