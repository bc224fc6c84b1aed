using System.Diagnostics;
using Engram.Pipeline.Simulation.EngramApp;
using Engram.Pipeline.Testing;
using Engram.Pipeline.Testing.Engram;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace Engram.Pipeline.Integration.Tests;

/// <summary>
/// Two machines on Engram databases made as upstream makes them, each with months of its own Engram use in project
/// <c>team</c> before the user enrolled it, and a project it never enrolled. Their devices start on them, the
/// machines keep working while they sync, and the devices are restarted: what one wrote, the other's Engram finds
/// with its own search; the files stay sound; nothing outside sync changes; a restart pushes nothing again.
/// </summary>
[Collection(ServersFixture.Collection)]
public sealed class When_two_machines_with_their_own_Engram_histories_sync(ServersFixture servers, ITestOutputHelper output)
{
    private const string Project = "team";
    private const string Private = "private";
    private static readonly string[] Machines = ["laptop", "desktop"];

    [Fact]
    public async Task They_converge_in_Engrams_tables_and_search_and_nothing_outside_sync_changes()
    {
        await using var world = await PipelineWorld.CreateAsync(servers, "engram_histories", ingestProcesses: 2);
        var cluster = world.Cluster;
        var paths = Machines.Select(m => Path.Combine(world.WorkDirectory, $"{m}.db")).ToArray();
        var workloads = new EngramWorkload[Machines.Length];
        for (var i = 0; i < Machines.Length; i++)
        {
            UpstreamEngram.Create(paths[i]);
            using var engram = new EngramWriter(paths[i], new Random(100 + i));
            // Engram used for 400 operations before the project is enrolled (which backfills them), then 600 more rows.
            workloads[i] = new EngramWorkload(100 + i, Machines[i], [Project], enrollAfter: 400);
            workloads[i].Journal(engram, 600);
            engram.StartSession($"{Machines[i]}-private", Private, $"/home/{Machines[i]}/private");
            for (var n = 0; n < 40; n++)
            {
                engram.AddObservation($"{Machines[i]}-private", "decision", $"Private {Machines[i]} {n}", $"only on the {Machines[i]}: {n}", Private);
                engram.AddPrompt($"{Machines[i]}-private", $"a private question {n} on the {Machines[i]}", Private);
            }
        }
        var privateRows = await Task.WhenAll(paths.Select(PrivateRowsAsync));
        var ownRows = await Task.WhenAll(paths.Select(path => OwnRowsAsync(path)));
        output.WriteLine("Before the devices started:");
        await WriteCountsAsync(paths);

        // 1. The devices start on the histories.
        var clock = Stopwatch.StartNew();
        await cluster.StartIngestAsync(CancellationToken.None);
        for (var i = 0; i < Machines.Length; i++)
        {
            await cluster.StartDeviceAsync(Machines[i], CancellationToken.None, seed: 200 + i);
        }
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(3), CancellationToken.None);
        output.WriteLine($"Histories synced in {clock.Elapsed.TotalSeconds:0.0} s. After:");
        await WriteCountsAsync(paths);
        await PipelineWorld.AssertInvariantsAsync(cluster);
        // Sync changed nothing of each machine's own memories (row ids, counters and all), whatever came back from
        // the cloud: its own mutations are not applied again.
        Assert.Equal(ownRows, await Task.WhenAll(paths.Select((path, i) => OwnRowsAsync(path, ownRows[i].Keys))));
        await AssertEachFindsTheOthersAsync(paths);
        await AssertSoundAsync(paths);

        // 2. Engram keeps writing on both machines while their devices sync: every write is Engram's own
        // BEGIN IMMEDIATE transaction with its 5 s busy timeout, and none may fail.
        var longest = await Task.WhenAll(cluster.Devices.Select((device, i) => Task.Run(() =>
        {
            var slowest = TimeSpan.Zero;
            for (var op = 0; op < 1_500; op++)
            {
                var write = Stopwatch.StartNew();
                workloads[i].Next(device.Engram);
                slowest = write.Elapsed > slowest ? write.Elapsed : slowest;
            }
            return slowest;
        })));
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(3), CancellationToken.None);
        output.WriteLine($"1,500 more Engram operations on each machine while syncing; the slowest took {longest.Max().TotalMilliseconds:0} ms " +
                         "(Engram's busy timeout is 5,000 ms). After:");
        await WriteCountsAsync(paths);
        await PipelineWorld.AssertInvariantsAsync(cluster);
        await AssertEachFindsTheOthersAsync(paths);
        await AssertSoundAsync(paths);

        // 3. Restarted, the devices push nothing again; a memory saved afterwards is the only new row of the cloud.
        var head = await cluster.Cloud.HeadAsync(Project, CancellationToken.None);
        var journals = await Task.WhenAll(paths.Select(path => ScalarAsync(path, "SELECT COUNT(*) FROM sync_mutations")));
        await cluster.StopDevicesAsync();
        for (var i = 0; i < Machines.Length; i++)
        {
            await cluster.StartDeviceAsync(Machines[i], CancellationToken.None, seed: 300 + i);
        }
        var after = cluster.Devices[0].Engram.AddObservation($"manual-save-{Project}", "decision", "Restarted devices", "saved after the restart",
            Project);
        await cluster.WaitUntilSettledAsync(TimeSpan.FromMinutes(1), CancellationToken.None);
        Assert.Equal(head + after.Seqs.Count, await cluster.Cloud.HeadAsync(Project, CancellationToken.None));
        Assert.Equal(journals[0] + after.Seqs.Count, await ScalarAsync(paths[0], "SELECT COUNT(*) FROM sync_mutations"));
        Assert.Equal(journals[1], await ScalarAsync(paths[1], "SELECT COUNT(*) FROM sync_mutations"));
        Assert.Equal(1, await FoundAsync(paths[1], "observations_fts", "saved after the restart", after.SyncId));
        await PipelineWorld.AssertInvariantsAsync(cluster);

        // Sync never touched what it does not carry: the never-enrolled project stayed on its machine, unchanged.
        for (var i = 0; i < Machines.Length; i++)
        {
            Assert.Equal(privateRows[i], await PrivateRowsAsync(paths[i]));
            Assert.Equal(0, await ScalarAsync(paths[1 - i], $"SELECT COUNT(*) FROM observations WHERE session_id = '{Machines[i]}-private'"));
        }
    }

    /// <summary>Every live observation and prompt each machine saved is found on the other by Engram's own full-text search.</summary>
    private async Task AssertEachFindsTheOthersAsync(string[] paths)
    {
        var missing = new List<string>();
        long searched = 0;
        for (var i = 0; i < paths.Length; i++)
        {
            foreach (var (syncId, title) in await OwnLiveAsync(paths[i], "observations", "title"))
            {
                searched++;
                if (await FoundAsync(paths[1 - i], "observations_fts", title, syncId) != 1)
                {
                    missing.Add($"{Machines[1 - i]} does not find observation {syncId} '{title}'");
                }
            }
            foreach (var (syncId, content) in await OwnLiveAsync(paths[i], "user_prompts", "content"))
            {
                searched++;
                // Engram's indexes are trigram ones: a phrase matches where it occurs as written.
                var phrase = content[..Math.Min(40, content.Length)];
                phrase = char.IsHighSurrogate(phrase[^1]) ? phrase[..^1] : phrase;
                if (await FoundAsync(paths[1 - i], "prompts_fts", phrase, syncId) != 1)
                {
                    missing.Add($"{Machines[1 - i]} does not find prompt {syncId} '{phrase}'");
                }
            }
        }
        output.WriteLine($"Search: {searched - missing.Count} of {searched} memories and prompts found on the other machine.");
        Assert.True(missing.Count == 0, string.Join('\n', missing.Take(20)));
    }

    /// <summary><c>PRAGMA integrity_check</c> is ok and <c>foreign_key_check</c> finds nothing, on both files.</summary>
    private static async Task AssertSoundAsync(string[] paths)
    {
        foreach (var path in paths)
        {
            Assert.Equal(["ok"], await RowsAsync(path, "PRAGMA integrity_check"));
            Assert.Empty(await RowsAsync(path, "PRAGMA foreign_key_check"));
        }
    }

    /// <summary>How many rows of <paramref name="syncId"/> Engram's search finds for the phrase <paramref name="text"/>.</summary>
    private static async Task<long> FoundAsync(string path, string fts, string text, string syncId)
    {
        var table = fts == "observations_fts" ? "observations" : "user_prompts";
        await using var connection = await OpenAsync(path);
        await using var search = connection.CreateCommand();
        search.CommandText = $"""
            SELECT COUNT(*) FROM {fts} f JOIN {table} t ON t.id = f.rowid
            WHERE {fts} MATCH $phrase AND t.sync_id = $sync AND {(table == "observations" ? "t.deleted_at IS NULL" : "1")}
            """;
        search.Parameters.AddWithValue("$phrase", "\"" + text.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"");
        search.Parameters.AddWithValue("$sync", syncId);
        return (long)(await search.ExecuteScalarAsync())!;
    }

    /// <summary>The live observations or prompts of the project this machine journaled itself: sync id and searchable text.</summary>
    private static async Task<List<(string SyncId, string Text)>> OwnLiveAsync(string path, string table, string column)
    {
        var entity = table == "observations" ? "observation" : "prompt";
        var live = table == "observations" ? "deleted_at IS NULL" : "1";
        await using var connection = await OpenAsync(path);
        await using var select = connection.CreateCommand();
        select.CommandText = $"""
            SELECT sync_id, {column} FROM {table}
            WHERE project = '{Project}' AND {live}
              AND sync_id IN (SELECT entity_key FROM sync_mutations WHERE entity = '{entity}' AND project = '{Project}')
            ORDER BY id
            """;
        var rows = new List<(string, string)>();
        await using var reader = await select.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetString(0), reader.GetString(1)));
        }
        return rows;
    }

    /// <summary>Every column of the never-enrolled project's sessions, observations and prompts.</summary>
    private static async Task<List<string>> PrivateRowsAsync(string path) =>
    [
        .. await RowsAsync(path, $"SELECT * FROM sessions WHERE project = '{Private}'"),
        .. await RowsAsync(path, $"SELECT * FROM observations WHERE project = '{Private}' ORDER BY id"),
        .. await RowsAsync(path, $"SELECT * FROM user_prompts WHERE project = '{Private}' ORDER BY id"),
    ];

    /// <summary>
    /// Every column of the observations and prompts this machine journaled in the project, by table and sync id; of
    /// <paramref name="keys"/> only, when given ("gone" for a row no longer there).
    /// </summary>
    private static async Task<SortedDictionary<string, string>> OwnRowsAsync(string path, IEnumerable<string>? keys = null)
    {
        var rows = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (table, entity) in new[] { ("observations", "observation"), ("user_prompts", "prompt") })
        {
            foreach (var row in await RowsAsync(path, $"""
                         SELECT '{table}/' || sync_id, * FROM {table}
                         WHERE sync_id IN (SELECT entity_key FROM sync_mutations WHERE entity = '{entity}' AND project = '{Project}')
                         """))
            {
                rows[row[..row.IndexOf('|', StringComparison.Ordinal)]] = row;
            }
        }
        return keys is null ? rows : new SortedDictionary<string, string>(keys.ToDictionary(k => k, k => rows.GetValueOrDefault(k, "gone")),
            StringComparer.Ordinal);
    }

    private async Task WriteCountsAsync(string[] paths)
    {
        string[] tables =
        [
            "sessions", "observations", "user_prompts", "memory_relations", "sync_mutations", "sync_delete_tombstones",
            "sync_apply_deferred", "sync_seq_mapping", "pipeline_applied",
        ];
        for (var i = 0; i < paths.Length; i++)
        {
            var counts = new List<string>();
            foreach (var table in tables)
            {
                var exists = await ScalarAsync(paths[i], $"SELECT COUNT(*) FROM sqlite_master WHERE name = '{table}'") == 1;
                counts.Add($"{table} {(exists ? await ScalarAsync(paths[i], $"SELECT COUNT(*) FROM {table}") : "-")}");
            }
            output.WriteLine($"  {Machines[i]}: {string.Join(", ", counts)}");
        }
    }

    private static async Task<List<string>> RowsAsync(string path, string sql)
    {
        await using var connection = await OpenAsync(path);
        await using var select = connection.CreateCommand();
        select.CommandText = sql;
        var rows = new List<string>();
        await using var reader = await select.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add(string.Join('|', Enumerable.Range(0, reader.FieldCount).Select(c => reader.IsDBNull(c) ? "NULL" : reader.GetValue(c).ToString())));
        }
        return rows;
    }

    private static async Task<long> ScalarAsync(string path, string sql)
    {
        await using var connection = await OpenAsync(path);
        await using var select = connection.CreateCommand();
        select.CommandText = sql;
        return (long)(await select.ExecuteScalarAsync())!;
    }

    private static async Task<SqliteConnection> OpenAsync(string path)
    {
        var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync();
        return connection;
    }
}
