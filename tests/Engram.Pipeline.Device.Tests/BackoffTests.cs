using Engram.Pipeline.Hosting;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_a_loop_keeps_failing
{
    [Fact]
    public void Delays_double_up_to_the_cap_and_start_again_after_a_success()
    {
        var backoff = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));
        var start = DateTimeOffset.UnixEpoch;
        var delays = Enumerable.Range(0, 8).Select(i => backoff.Failed(new IOException($"broker away {i}"), start.AddSeconds(i))).ToList();

        Assert.Equal([1, 2, 4, 8, 16, 30, 30, 30], delays.Select(d => d.TotalSeconds));
        Assert.Equal(new FailureRun(8, start, "broker away 7", TimeSpan.FromSeconds(30)), backoff.Failing);

        backoff.Succeeded();
        Assert.Null(backoff.Failing);
        Assert.Equal(TimeSpan.FromSeconds(1), backoff.Failed(new IOException("again"), start));
    }
}
