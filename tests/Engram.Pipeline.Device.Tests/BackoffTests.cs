using Engram.Pipeline.Hosting;

namespace Engram.Pipeline.Device.Tests;

public sealed class When_a_loop_keeps_failing
{
    private static readonly double[] Ceilings = [1, 2, 4, 8, 16, 30, 30, 30];

    [Fact]
    public void Delays_lie_between_half_and_all_of_a_ceiling_that_doubles_up_to_the_cap_and_starts_again_after_a_success()
    {
        var backoff = new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), new Random(7));
        var start = DateTimeOffset.UnixEpoch;
        var delays = Enumerable.Range(0, 8).Select(i => backoff.Failed(new IOException($"broker away {i}"), start.AddSeconds(i))).ToList();

        Assert.All(delays.Zip(Ceilings), pair =>
            Assert.InRange(pair.First.TotalSeconds, pair.Second / 2, pair.Second));
        Assert.Equal(new FailureRun(8, start, "broker away 7", delays[^1]), backoff.Failing);

        backoff.Succeeded();
        Assert.Null(backoff.Failing);
        Assert.InRange(backoff.Failed(new IOException("again"), start).TotalSeconds, 0.5, 1);
    }

    [Fact]
    public void A_fleet_that_failed_together_does_not_retry_together()
    {
        // Twenty devices lose the broker at the same moment, three times over.
        var fleet = Enumerable.Range(0, 20).Select(_ => new Backoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30))).ToList();
        var retries = fleet.Select(backoff => Enumerable.Range(0, 3)
            .Sum(_ => backoff.Failed(new IOException("broker away"), DateTimeOffset.UnixEpoch).TotalMilliseconds)).ToList();

        Assert.All(retries, total => Assert.InRange(total, 3_500, 7_000));
        Assert.True(retries.Distinct().Count() > 15, $"only {retries.Distinct().Count()} distinct retry times among 20 devices");
    }
}
