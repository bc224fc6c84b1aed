using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client.Exceptions;

namespace Engram.Pipeline.Hosting;

public static class ServiceRunner
{
    private const string LogCategory = "Engram.Pipeline";

    /// <summary>
    /// A service program's whole life: <c>probe</c> asks the running instance for its health; otherwise the host is
    /// built with health, metrics and telemetry and <paramref name="addServices"/>, and run. A failed start (a missing
    /// or bad setting, an unreachable broker or database) is one clear log line and exit code 1, never a stack trace.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, string serviceName, Action<IServiceCollection, IConfiguration> addServices)
    {
        var builder = WebApplication.CreateBuilder(args);
        if (args is ["probe", ..])
        {
            return await Operations.ProbeAsync(builder.Configuration["Urls"]);
        }
        builder.AddOperations(serviceName);
        WebApplication app;
        try
        {
            addServices(builder.Services, builder.Configuration);
            app = builder.Build();
        }
#pragma warning disable CA1031 // Any start-up failure ends the process; the reason is logged.
        catch (Exception e)
#pragma warning restore CA1031
        {
            // No host to log through yet: the same console format, for this one line.
            using var logging = LoggerFactory.Create(logs => logs.AddOneLineConsole());
            logging.CreateLogger(LogCategory).LogCritical("Start-up failed: {Reason}", Describe(e));
            return 1;
        }
        app.MapOperations();
        return await RunServiceAsync(app);
    }

    private static async Task<int> RunServiceAsync(IHost host)
    {
        using (host)
        {
            var log = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategory);
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
