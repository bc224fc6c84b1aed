using System.Diagnostics;
using System.Text.Json;
using Engram.Pipeline.Simulation.EngramApp;
using Xunit.Abstractions;

namespace Engram.Pipeline.Convergence.Tests;

/// <summary>One long run of the workload, shared by the tests that examine what it leaves.</summary>
public sealed class LongEngramRun : IDisposable
{
    public const int Operations = 10_000;

    public LongEngramRun()
    {
        var clock = Stopwatch.StartNew();
        Returned = When_the_engram_workload_runs.Run(File, new EngramWorkload(11, "desktop", When_the_engram_workload_runs.Projects), Operations);
        Elapsed = clock.Elapsed;
    }

    internal EngramFile File { get; } = new(seed: 11, clock: TimeProvider.System);

    /// <summary>The seqs the operations returned.</summary>
    public List<long> Returned { get; }

    public TimeSpan Elapsed { get; }

    public void Dispose() => File.Dispose();
}

public sealed class When_the_engram_workload_runs(LongEngramRun run, ITestOutputHelper output) : IClassFixture<LongEngramRun>
{
    internal static readonly string[] Projects = ["engram", "notes"];

    [Fact]
    public void Its_observation_sizes_follow_engrams_mix()
    {
        var sizes = run.File.Rows("SELECT length(CAST(content AS BLOB)) FROM observations", r => r.GetInt64(0));
        double Share(Func<long, bool> inBucket) => 100.0 * sizes.Count(inBucket) / sizes.Count;

        output.WriteLine($"{sizes.Count} observations");
        Assert.True(sizes.Count >= 3_000, $"only {sizes.Count} observations");
        Assert.InRange(Share(s => s is >= 140 and <= 900), 52.0, 58.0);
        Assert.InRange(Share(s => s is > 900 and <= 4_096), 32.0, 38.0);
        Assert.InRange(Share(s => s is > 4_096 and <= 12_288), 5.0, 9.0);
        Assert.InRange(Share(s => s is >= 40_000 and <= 50_015), 2.0, 4.5);
        Assert.Equal(100.0, Share(s => s is >= 140 and <= 12_288 or >= 40_000 and <= 50_015), 6);
        Assert.True(run.File.Number("SELECT COUNT(*) FROM observations WHERE content LIKE '%... [truncated]'") > 0);
    }

    [Fact]
    public void A_long_run_leaves_a_sound_database_and_a_journal_as_upstream_writes_it()
    {
        var (file, returned) = (run.File, run.Returned);
        output.WriteLine($"{LongEngramRun.Operations} operations in {run.Elapsed}");

        Assert.Equal("ok", file.Text("PRAGMA integrity_check"));
        Assert.Empty(file.Rows("PRAGMA foreign_key_check", r => r.GetString(0)));

        var journal = file.Journal();
        Assert.All(journal, row =>
        {
            Assert.Equal(("cloud", "local", "pending"), (row.TargetKey, row.Source, row.Disposition));
            Assert.Contains(row.Project, Projects);
            using var payload = JsonDocument.Parse(row.Payload);
            var id = payload.RootElement.GetProperty(row.Entity == "session" ? "id" : "sync_id").GetString();
            Assert.Equal(row.EntityKey, id);
        });
        // Every row still in the journal was returned by the operation that wrote it; superseded session upserts left gaps.
        Assert.Subset(returned.ToHashSet(), journal.Select(r => r.Seq).ToHashSet());
        Assert.True(journal.Count < journal[^1].Seq, "no superseded session upsert left a gap");
        Assert.Superset(
            new HashSet<(string, string)>
            {
                ("session", "upsert"), ("session", "delete"), ("observation", "upsert"), ("observation", "delete"),
                ("prompt", "upsert"), ("prompt", "delete"), ("relation", "upsert"),
            },
            journal.Select(r => (r.Entity, r.Op)).ToHashSet());
        Assert.Contains(journal, r => r.Entity == "session" && r.EntityKey == "manual-save-engram" && r.Payload.Contains("\"ownership_mode\":\"project_owned\"", StringComparison.Ordinal));
        Assert.Contains(journal, r => r.Entity == "observation" && r.Payload.Contains("\"hard_delete\":true", StringComparison.Ordinal));
        Assert.Contains(journal, r => r.Payload.Contains("\\u003c", StringComparison.Ordinal) && r.Payload.Contains("\\u0026", StringComparison.Ordinal));

        // Children before parents: an agent session's upsert usually lands after its observations and prompts.
        var firstChild = new Dictionary<string, long>();
        foreach (var row in journal.Where(r => r.Entity is "observation" or "prompt" && r.Op == "upsert"))
        {
            using var payload = JsonDocument.Parse(row.Payload);
            firstChild.TryAdd(payload.RootElement.GetProperty("session_id").GetString()!, row.Seq);
        }
        var sessions = journal.Where(r => r.Entity == "session" && r.Op == "upsert" && !r.EntityKey.StartsWith("manual-save-", StringComparison.Ordinal)
            && firstChild.ContainsKey(r.EntityKey)).ToList();
        var parentLast = sessions.Count(r => r.Seq > firstChild[r.EntityKey]);
        output.WriteLine($"{parentLast} of {sessions.Count} sessions journaled after their first child");
        Assert.True(parentLast > sessions.Count / 2, $"only {parentLast} of {sessions.Count} sessions were journaled after a child");
    }

    [Fact]
    public void The_same_seeds_make_the_same_journal()
    {
        using var one = new EngramFile(seed: 3, clock: TimeProvider.System);
        using var two = new EngramFile(seed: 3, clock: TimeProvider.System);

        Run(one, new EngramWorkload(3, "laptop", Projects), 1_500);
        Run(two, new EngramWorkload(3, "laptop", Projects), 1_500);

        Assert.Equal(one.Journal().Select(r => (r.Seq, r.Entity, r.EntityKey, r.Op)), two.Journal().Select(r => (r.Seq, r.Entity, r.EntityKey, r.Op)));
        Assert.Equal(one.Text("SELECT group_concat(content, '|') FROM observations"), two.Text("SELECT group_concat(content, '|') FROM observations"));
    }

    [Fact]
    public void Nothing_is_journaled_before_the_projects_are_enrolled_and_enrolling_backfills()
    {
        using var file = new EngramFile(seed: 5, clock: TimeProvider.System);
        var workload = new EngramWorkload(5, "laptop", ["engram"], enrollAfter: 200);

        Assert.Empty(Run(file, workload, 200));
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM sync_mutations"));

        var backfill = workload.Next(file.Writer);

        Assert.NotEmpty(backfill);
        Assert.Equal(backfill, file.Journal().Select(r => r.Seq));
        Assert.Equal(201, workload.Operations);
    }

    internal static List<long> Run(EngramFile file, EngramWorkload workload, int operations)
    {
        var seqs = new List<long>();
        for (var i = 0; i < operations; i++)
        {
            seqs.AddRange(workload.Next(file.Writer));
        }
        return seqs;
    }
}
