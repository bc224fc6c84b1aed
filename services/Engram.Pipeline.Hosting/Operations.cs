using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Engram.Pipeline.Hosting;

/// <summary>
/// What operators read from every service: <c>/health/live</c>, <c>/health/ready</c> (broker, database,
/// lag) and <c>/metrics</c> (Prometheus), plus OTLP export of metrics and traces when
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.
/// </summary>
public static class Operations
{
    /// <summary>The meter every Engram.Pipeline instrument belongs to.</summary>
    public const string MeterName = "Engram.Pipeline";

    // MassTransit's own ActivitySource and Meter.
    private const string MassTransitSource = "MassTransit";

    /// <summary>Where health and metrics listen when <c>Urls</c> is not set, unless another process has the port.</summary>
    public const int DefaultPort = 8080;

    /// <summary>
    /// Health, metrics and telemetry for <paramref name="serviceName"/>. Without a <c>Urls</c> setting they listen on
    /// <see cref="DefaultPort"/>, or, when another process (a second ingest on the same host, say) already has it, on a
    /// free port; the service logs where once it has started.
    /// </summary>
    public static WebApplicationBuilder AddOperations(this WebApplicationBuilder builder, string serviceName)
    {
        if (string.IsNullOrWhiteSpace(builder.Configuration["Urls"]))
        {
            builder.WebHost.UseUrls($"http://0.0.0.0:{(IsFree(DefaultPort) ? DefaultPort : 0)}");
        }
        builder.Logging.AddOneLineConsole();
        builder.Services.AddHealthChecks();
        var otlp = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(serviceName))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(MeterName, MassTransitSource).AddPrometheusExporter();
                if (otlp)
                {
                    metrics.AddOtlpExporter();
                }
            })
            .WithTracing(tracing =>
            {
                tracing.AddSource(MassTransitSource);
                if (otlp)
                {
                    tracing.AddOtlpExporter();
                }
            });
        return builder;
    }

    public static WebApplication MapOperations(this WebApplication app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { ResponseWriter = WriteReportAsync });
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Any, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Every check with its status and description, for people and for compose.</summary>
    private static Task WriteReportAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        }));
    }

    /// <summary>
    /// <c>service probe</c>: asks the running service's <c>/health/ready</c> and exits 0 when healthy,
    /// so a container health check needs no curl in the image.
    /// </summary>
    public static async Task<int> ProbeAsync(string? urls)
    {
        urls ??= $"http://127.0.0.1:{DefaultPort}";
        var first = urls.Split(';', StringSplitOptions.RemoveEmptyEntries)[0].Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal)
            .Replace("+", "127.0.0.1", StringComparison.Ordinal).Replace("*", "127.0.0.1", StringComparison.Ordinal);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        try
        {
            using var response = await http.GetAsync(new Uri(new Uri(first), "/health/ready"));
            return response.IsSuccessStatusCode ? 0 : 1;
        }
        catch (HttpRequestException)
        {
            return 1;
        }
        catch (TaskCanceledException)
        {
            return 1;
        }
    }
}
