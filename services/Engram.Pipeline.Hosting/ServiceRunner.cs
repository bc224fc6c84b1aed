using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Hosting;

public static class ServiceRunner
{
    /// <summary>
    /// Runs a service host and turns a failed start (bad configuration, unreachable broker or
    /// database) into one clear log line and exit code 1 instead of a stack trace.
    /// </summary>
    public static async Task<int> RunServiceAsync(this IHost host)
    {
        try
        {
            await host.RunAsync();
            return 0;
        }
        catch (Exception e) when (e is OptionsValidationException or InvalidOperationException or TimeoutException
                                      or OperationCanceledException or MassTransit.MassTransitException)
        {
            var log = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Engram.Pipeline");
            log.LogCritical(e, "Start-up failed: {Reason}", Flatten(e));
            return 1;
        }
    }

    private static string Flatten(Exception e)
    {
        var messages = new List<string>();
        for (var current = e; current is not null; current = current.InnerException)
        {
            messages.Add(current.Message);
        }
        return string.Join(" <- ", messages.Distinct());
    }
}
