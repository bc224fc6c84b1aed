using Engram.Pipeline.Cloud;
using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Testing;
using Npgsql;
using static Engram.Pipeline.CloudIngest.Tests.IngestHarness;

namespace Engram.Pipeline.CloudIngest.Tests;

[Collection(ServersFixture.Collection)]
public sealed class When_a_payload_holds_numbers_at_the_edge_of_postgresql_numeric(ServersFixture servers)
{
    /// <summary>Numbers System.Text.Json reads, around PostgreSQL numeric's limits (131,072 digits before the point, 16,383 after).</summary>
    private static readonly string[] Numbers =
    [
        "0", "-0", "1E+5", "-1.5e-3", "123456789012345678901234567890.123456789",
        "1e131071", "1e131072", "-1e131072", "10e131070", "10e131071", "0.1e131072", "0.1e131073", "0.001e131074",
        new string('9', 131_072), new string('9', 131_073), "0." + new string('0', 16_382) + "1", "0." + new string('0', 16_383) + "1",
        "1e-16383", "1e-16384", "1.5e-16382", "1.5e-16383", "1.0e-16383", "100e-16381", "100e-16384",
        "0e999999", "0e-16383", "0e-16384", "0.0e-16383", "0e1073741822", "0e1073741823", "1e-1073741823",
        "1e99999999999999999999",
    ];

    [Fact]
    public async Task The_validator_accepts_exactly_those_jsonb_takes()
    {
        await using var dataSource = NpgsqlDataSource.Create((await servers.GetAsync()).CloudDbAdminConnectionString);
        var validator = new BatchValidator(new IngestOptions());
        var disagreements = new List<string>();
        foreach (var number in Numbers)
        {
            var payload = $"[{number}]";
            var postgresTakesIt = await JsonbTakesAsync(dataSource, payload);
            var problem = validator.CheckMutation(Upsert(1, payload: payload), 0);
            if (postgresTakesIt != problem is null || problem is { Reason: not RejectionReasons.PayloadNotJson })
            {
                disagreements.Add($"{Shown(number)}: jsonb {(postgresTakesIt ? "takes it" : "refuses it")}, the validator says {problem?.Reason ?? "fine"}");
            }
        }
        Assert.True(disagreements.Count == 0, string.Join('\n', disagreements));
    }

    private static async Task<bool> JsonbTakesAsync(NpgsqlDataSource dataSource, string json)
    {
        await using var cast = dataSource.CreateCommand("SELECT $1::jsonb");
        cast.Parameters.Add(new NpgsqlParameter { Value = json });
        try
        {
            await cast.ExecuteScalarAsync();
            return true;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.NumericValueOutOfRange)
        {
            return false;
        }
    }

    private static string Shown(string number) => number.Length <= 40 ? number : $"{number[..20]}…({number.Length} characters)";
}
