using System.Diagnostics;
using System.Globalization;

namespace Engram.Pipeline.Benchmarks;

/// <summary>One row of the results table.</summary>
public sealed record Row(string Name, double MutationsPerSecond, double? P50Ms, double? P99Ms, double PeakMemoryMb, double CpuSecondsPer100k, string Note);

/// <summary>
/// CPU time and peak resident memory, while one row runs, of this process (the harness: devices,
/// ingest and clients) and of the servers it talks to (RabbitMQ's beam.smp, PostgreSQL's
/// processes), read from /proc every 100 ms.
/// </summary>
public sealed class ResourceMeter
{
    private const double TicksPerSecond = 100.0;
    private readonly TimeSpan _ownCpu;
    // Per server process: its CPU ticks when first seen (0 for one started during the row) and when last
    // seen, so that a process ending during the row (a PostgreSQL backend) takes none of the others' time away.
    private readonly Dictionary<int, (double First, double Last)> _serverTicks = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _sampler;
    private double _harnessMb, _brokerMb, _databaseMb;

    private ResourceMeter()
    {
        using var self = Process.GetCurrentProcess();
        _ownCpu = self.TotalProcessorTime;
        foreach (var (pid, _, ticks, _) in ServerProcesses())
        {
            _serverTicks[pid] = (ticks, ticks);
        }
        _sampler = SampleAsync();
    }

    public static ResourceMeter Start() => new();

    /// <summary>CPU seconds since the start (harness and servers), and the peaks seen.</summary>
    public async Task<(double CpuSeconds, (double Harness, double Broker, double Database) PeakMb)> StopAsync()
    {
        await _stop.CancelAsync();
        await _sampler;
        _stop.Dispose();
        using var self = Process.GetCurrentProcess();
        Sample();
        var cpu = (self.TotalProcessorTime - _ownCpu).TotalSeconds + _serverTicks.Values.Sum(t => t.Last - t.First) / TicksPerSecond;
        return (cpu, (_harnessMb, _brokerMb, _databaseMb));
    }

    private async Task SampleAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Sample();
            try
            {
                await Task.Delay(100, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private void Sample()
    {
        using (var self = Process.GetCurrentProcess())
        {
            _harnessMb = Math.Max(_harnessMb, self.WorkingSet64 / 1048576.0);
        }
        foreach (var (pid, name, ticks, rssKb) in ServerProcesses())
        {
            _serverTicks[pid] = (_serverTicks.TryGetValue(pid, out var seen) ? seen.First : 0, ticks);
            if (name == "beam.smp")
            {
                _brokerMb = Math.Max(_brokerMb, rssKb / 1024.0);
            }
            else
            {
                _databaseMb = Math.Max(_databaseMb, rssKb / 1024.0);
            }
        }
    }

    private static IEnumerable<(int Pid, string Name, double Ticks, long RssKb)> ServerProcesses()
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc").Where(d => char.IsDigit(Path.GetFileName(d)[0])))
        {
            (int, string, double, long)? entry = null;
            try
            {
                var name = File.ReadAllText(Path.Combine(directory, "comm")).Trim();
                if (name is "beam.smp" or "postgres")
                {
                    var stat = File.ReadAllText(Path.Combine(directory, "stat"));
                    var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                    var ticks = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
                    var peak = File.ReadLines(Path.Combine(directory, "status")).FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
                    var kb = peak is null ? 0 : long.Parse(peak.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
                    entry = (int.Parse(Path.GetFileName(directory), CultureInfo.InvariantCulture), name, ticks, kb);
                }
            }
            catch (IOException)
            {
                // The process ended while being read.
            }
            catch (UnauthorizedAccessException)
            {
            }
            if (entry is { } found)
            {
                yield return found;
            }
        }
    }

    public static (double P50, double P99) Percentiles(List<double> samples)
    {
        if (samples.Count == 0)
        {
            return (0, 0);
        }
        samples.Sort();
        double At(double p) => samples[Math.Min(samples.Count - 1, (int)Math.Ceiling(p * samples.Count) - 1)];
        return (At(0.50), At(0.99));
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? 0 : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
