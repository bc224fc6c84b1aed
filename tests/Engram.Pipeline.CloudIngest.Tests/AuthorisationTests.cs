using Engram.Pipeline.Cloud;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Testing;
using MassTransit;
using static Engram.Pipeline.CloudIngest.Tests.IngestHarness;

namespace Engram.Pipeline.CloudIngest.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_devices_are_authorised(ServersFixture servers)
{
    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task Only_the_device_itself_granted_the_target_may_act(string backend)
    {
        await using var ingest = await StartAsync(servers, backend, new IngestOptions());
        await ingest.ExecuteAsync("""
            INSERT INTO cloud_device_grants (target_key, device_id, granted_at) VALUES ('team', 'a', '2024-01-01T00:00:00Z')
            """);
        var ct = CancellationToken.None;

        Assert.Null(await ingest.Authoriser.RefusalAsync("a", "team", "a", ct));
        Assert.Contains("may act only as device 'a'", await ingest.Authoriser.RefusalAsync("a", "team", "b", ct));
        Assert.Contains("not granted", await ingest.Authoriser.RefusalAsync("a", "other", "a", ct));
        Assert.Contains("no AMQP user_id", await ingest.Authoriser.RefusalAsync(null, "team", "a", ct));
        Assert.Contains("may act only", await ingest.Authoriser.RefusalAsync("a", null, null, ct));
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task On_a_transport_without_user_id_a_push_is_refused_and_nothing_is_written(string backend)
    {
        await using var ingest = await StartAsync(servers, backend, new IngestOptions());

        var refusal = Assert.IsType<PushRejected>(await ingest.PushAsync(Batch("a", 0, Upsert(1))));

        Assert.Equal(RejectionReasons.NotAuthorised, refusal.Reason);
        Assert.Equal(0, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_targets"));
        Assert.Equal(0, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_devices"));
        Assert.Equal(0, await ingest.ScalarAsync("SELECT COUNT(*) FROM cloud_mutations"));
    }

    [Theory]
    [InlineData(Postgres)]
    [InlineData(Sqlite)]
    public async Task On_a_transport_without_user_id_a_pull_is_answered_with_a_fault(string backend)
    {
        await using var ingest = await StartAsync(servers, backend, new IngestOptions());

        var fault = await Assert.ThrowsAsync<RequestFaultException>(() => ingest.PullAsync("a", 0));

        Assert.StartsWith($"{RejectionReasons.NotAuthorised}: ", fault.Fault!.Exceptions[0].Message, StringComparison.Ordinal);
        // Answered, not dead-lettered: the request was consumed without a fault of its own.
        Assert.True(await ingest.Harness.Consumed.Any<PullMutations>(m => m.Exception is null));
    }
}
