using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace Engram.Pipeline.Hosting;

/// <summary>
/// Console logs an operator reads in <c>docker-compose logs</c> or a log file: one line per entry,
/// <c>level: category: message</c>, and an exception as the chain of its messages (<see cref="ServiceRunner.Describe"/>),
/// never a stack trace. A broker that is down is a line per attempt, not pages of frames.
/// </summary>
internal sealed class OneLineConsoleFormatter() : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "engram-one-line";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (string.IsNullOrEmpty(message) && logEntry.Exception is null)
        {
            return;
        }
        var line = $"{Level(logEntry.LogLevel)}: {logEntry.Category}: {message}";
        if (logEntry.Exception is { } exception)
        {
            line += $" ({ServiceRunner.Describe(exception)})";
        }
        textWriter.WriteLine(line.ReplaceLineEndings(" "));
    }

    private static string Level(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };
}

/// <summary>Puts the one-line formatter on the console logger.</summary>
public static class OneLineConsoleLogging
{
    public static ILoggingBuilder AddOneLineConsole(this ILoggingBuilder logging) =>
        logging.AddConsoleFormatter<OneLineConsoleFormatter, ConsoleFormatterOptions>()
            .AddConsole(options => options.FormatterName = OneLineConsoleFormatter.FormatterName);
}
