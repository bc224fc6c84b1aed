using System.Diagnostics;

namespace Engram.Pipeline.Testing;

/// <summary>Runs a bash script to completion within a deadline, capturing its output.</summary>
internal static class ScriptRunner
{
    public static async Task<ScriptResult> RunAsync(string script, IReadOnlyList<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var startInfo = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            startInfo.Environment[name] = value;
        }
        startInfo.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo)
            ?? throw new InvalidOperationException($"Could not start bash to run {script}.");
        using var deadline = new CancellationTokenSource(timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(deadline.Token);
        var stderr = process.StandardError.ReadToEndAsync(deadline.Token);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
            return new ScriptResult(process.ExitCode, await Combine(stdout, stderr), TimedOut: false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            return new ScriptResult(-1, await Combine(stdout, stderr), TimedOut: true);
        }
    }

    private static async Task<string> Combine(Task<string> stdout, Task<string> stderr)
    {
        static async Task<string> Read(Task<string> stream)
        {
            try
            {
                return await stream;
            }
            catch (OperationCanceledException)
            {
                return "(output not captured: the stream stayed open past the deadline)";
            }
        }

        return $"stdout:{Environment.NewLine}{await Read(stdout)}{Environment.NewLine}stderr:{Environment.NewLine}{await Read(stderr)}";
    }
}

internal sealed record ScriptResult(int ExitCode, string Output, bool TimedOut)
{
    public string Describe() => TimedOut ? "timed out and was killed" : $"exit code {ExitCode}";
}
