using System.Diagnostics;
using System.Globalization;

namespace Engram.Pipeline.Testing;

/// <summary>
/// One of the project's executables running as its own OS process (built by the same build as the
/// tests), with its configuration in environment variables. Disposing kills it.
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _output = [];

    private ServiceProcess(Process process, Uri url)
    {
        _process = process;
        Url = url;
    }

    /// <summary>Where the service's /health and /metrics answer.</summary>
    public Uri Url { get; }

    public int Id => _process.Id;

    /// <summary>The most resident memory the process has had so far (the kernel's VmHWM), in MiB.</summary>
    public double PeakMemoryMb => StatusMb("VmHWM:");

    /// <summary>The process's resident memory now (the kernel's VmRSS), in MiB.</summary>
    public double MemoryMb => StatusMb("VmRSS:");

    /// <summary>The file descriptors the process holds open now: files, sockets, pipes.</summary>
    public int OpenHandles => Directory.GetFileSystemEntries($"/proc/{_process.Id}/fd").Length;

    /// <summary>CPU time the process has used so far, user and system.</summary>
    public TimeSpan CpuTime
    {
        get
        {
            _process.Refresh();
            return _process.TotalProcessorTime;
        }
    }

    /// <summary>Starts <c>services/{project}</c> and waits until its /health/ready says Healthy.</summary>
    public static async Task<ServiceProcess> StartAsync(string project, IReadOnlyDictionary<string, string> environment, TimeSpan deadline)
    {
        var dll = RepositoryRoot.BuiltAssembly($"services/{project}", project);
        var url = new Uri($"http://127.0.0.1:{LocalPorts.Free()}/");
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { dll },
            WorkingDirectory = Path.GetDirectoryName(dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        start.Environment["Urls"] = url.ToString();
        var process = Process.Start(start) ?? throw new InvalidOperationException($"{project} did not start.");
        var service = new ServiceProcess(process, url);
        process.OutputDataReceived += (_, e) => service.Capture(e.Data);
        process.ErrorDataReceived += (_, e) => service.Capture(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var ready = await Condition.PollUntilAsync(async () =>
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{project} exited with {process.ExitCode}:{Environment.NewLine}{service.Output}");
            }
            try
            {
                using var response = await http.GetAsync(new Uri(url, "health/ready"));
                return response.IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Not listening yet, or not answering within the client's timeout.
                return false;
            }
        }, deadline, TimeSpan.FromMilliseconds(200));
        if (!ready)
        {
            await service.DisposeAsync();
            throw new TimeoutException($"{project} was not ready after {deadline.TotalSeconds:0} s:{Environment.NewLine}{service.Output}");
        }
        return service;
    }

    /// <summary>kill -9: the process ends at once, in whatever it was doing.</summary>
    public async Task KillAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGSTOP, then SIGCONT after <paramref name="duration"/>: the process stalls with whatever it holds.</summary>
    public async Task StallAsync(TimeSpan duration)
    {
        await SignalAsync("STOP");
        try
        {
            await Task.Delay(duration);
        }
        finally
        {
            await SignalAsync("CONT");
        }
    }

    private async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", _process.Id.ToString(CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
    }

    public string Output
    {
        get { lock (_output) { return string.Join(Environment.NewLine, _output.TakeLast(50)); } }
    }

    private void Capture(string? line)
    {
        if (line is not null)
        {
            lock (_output) { _output.Add(line); }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }

    private double StatusMb(string field)
    {
        var line = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }
}
