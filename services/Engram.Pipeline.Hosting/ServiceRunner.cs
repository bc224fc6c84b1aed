using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

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
                log.LogCritical("Start-up failed: {Reason}", Flatten(e));
                return 1;
            }
            await host.WaitForShutdownAsync();
            return 0;
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
