using System.Diagnostics;

namespace Engram.Pipeline.Testing;

/// <summary>Runs a program to completion within a deadline, capturing its output.</summary>
public static class ProgramRunner
{
    /// <summary>Runs <c>bash <paramref name="script"/> <paramref name="arguments"/></c>.</summary>
    public static Task<ProgramResult> RunScriptAsync(string script, IReadOnlyList<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null) =>
        RunAsync("bash", [script, .. arguments], timeout, environment);

    /// <summary>Runs one of the repository's .NET programs as the solution's build left it (see <see cref="RepositoryRoot.BuiltAssembly"/>).</summary>
    public static Task<ProgramResult> RunBuiltAsync(string projectDirectory, string assemblyName, IReadOnlyList<string> arguments,
        TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null) =>
        RunAsync("dotnet", [RepositoryRoot.BuiltAssembly(projectDirectory, assemblyName), .. arguments], timeout, environment);

    public static async Task<ProgramResult> RunAsync(string program, IReadOnlyList<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var startInfo = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            startInfo.Environment[name] = value;
        }
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo)
            ?? throw new InvalidOperationException($"Could not start {program}.");
        using var deadline = new CancellationTokenSource(timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(deadline.Token);
        var stderr = process.StandardError.ReadToEndAsync(deadline.Token);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
            return new ProgramResult(process.ExitCode, await Read(stdout), await Read(stderr), TimedOut: false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            return new ProgramResult(-1, await Read(stdout), await Read(stderr), TimedOut: true);
        }
    }

    private static async Task<string> Read(Task<string> stream)
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
}

/// <summary>How a program ended, and everything it wrote.</summary>
public sealed record ProgramResult(int ExitCode, string Stdout, string Stderr, bool TimedOut)
{
    /// <summary>Both streams, for a failure message.</summary>
    public string Output => $"stdout:{Environment.NewLine}{Stdout}{Environment.NewLine}stderr:{Environment.NewLine}{Stderr}";

    public string Describe() => TimedOut ? "timed out and was killed" : $"exit code {ExitCode}";
}
