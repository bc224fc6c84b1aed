using System.Text;
using Engram.Pipeline.Simulation.EngramApp;

namespace Engram.Pipeline.Convergence.Tests;

internal static class EngramSetup
{
    public const string Directory = "/home/dev/src/engram";

    /// <summary>An enrolled project "engram" with an open session "s-1".</summary>
    public static EngramFile Enrolled(int seed = 1)
    {
        var file = new EngramFile(seed);
        file.Writer.EnrollProject("engram");
        file.Writer.StartSession("s-1", "engram", Directory);
        return file;
    }

    public static (string Created, string Updated, string LastSeen) Times(this EngramFile file, string syncId) =>
        file.Rows("SELECT created_at, updated_at, last_seen_at FROM observations WHERE sync_id = $id",
            r => (r.GetString(0), r.GetString(1), r.GetString(2)), ("$id", syncId)).Single();
}

public sealed class When_the_writer_journals_an_entity
{
    [Fact]
    public void A_started_and_an_ended_session_are_journaled_byte_for_byte()
    {
        using var file = new EngramFile();
        file.Writer.EnrollProject("engram");

        var started = file.Writer.StartSession("s-1", "engram", EngramSetup.Directory);
        Assert.Equal(
            $$"""{"id":"s-1","project":"engram","ownership_mode":"shared","directory":"/home/dev/src/engram","started_at":"{{EngramFile.Now}}"}""",
            file.Payload(started.Single()));

        var ended = file.Writer.EndSession("s-1", "done & dusted");
        var endedAt = file.Text("SELECT ended_at FROM sessions WHERE id = 's-1'");
        Assert.Equal(
            $$"""{"id":"s-1","project":"engram","ownership_mode":"shared","directory":"/home/dev/src/engram","started_at":"{{EngramFile.Now}}","ended_at":"{{endedAt}}","summary":"done \u0026 dusted"}""",
            file.Payload(ended.Single()));
    }

    [Fact]
    public void An_observation_upsert_is_journaled_byte_for_byte_from_its_row()
    {
        using var file = EngramSetup.Enrolled();

        var saved = file.Writer.AddObservation("s-1", "decision", "Use <b>WAL</b>", "  Readers & writers: \"both\"\n日本 ✓\t\\ ", "engram",
            "Project", "Decision/WAL  Mode", "bash");

        var (created, updated, lastSeen) = file.Times(saved.SyncId);
        Assert.Matches("^obs-[0-9a-f]{16}$", saved.SyncId);
        Assert.Equal(
            $$"""{"sync_id":"{{saved.SyncId}}","session_id":"s-1","type":"decision","title":"Use \u003cb\u003eWAL\u003c/b\u003e","content":"Readers \u0026 writers: \"both\"\n日本 ✓\t\\","tool_name":"bash","project":"engram","scope":"project","topic_key":"decision/wal-mode","revision_count":1,"duplicate_count":1,"last_seen_at":"{{lastSeen}}","created_at":"{{created}}","updated_at":"{{updated}}"}""",
            file.Payload(saved.Seqs.Single()));
    }

    [Fact]
    public void Observation_deletes_are_journaled_byte_for_byte()
    {
        using var file = EngramSetup.Enrolled();
        var soft = file.Writer.AddObservation("s-1", "bugfix", "Soft", "gone softly", "engram").SyncId;
        var hard = file.Writer.AddObservation("s-1", "bugfix", "Hard", "gone for good", "engram").SyncId;

        var softSeq = file.Writer.DeleteObservation(soft, hard: false).Single();
        var hardSeq = file.Writer.DeleteObservation(hard, hard: true).Single();

        var deletedAt = file.Text("SELECT deleted_at FROM observations WHERE sync_id = $id", ("$id", soft));
        Assert.Equal(
            $$"""{"sync_id":"{{soft}}","session_id":"s-1","type":"","title":"","content":"","project":"engram","scope":"","revision_count":0,"duplicate_count":0,"deleted":true,"deleted_at":"{{deletedAt}}"}""",
            file.Payload(softSeq));
        Assert.Equal(
            $$"""{"sync_id":"{{hard}}","session_id":"s-1","type":"","title":"","content":"","project":"engram","scope":"","revision_count":0,"duplicate_count":0,"deleted":true,"deleted_at":"{{EngramFile.Now}}","hard_delete":true}""",
            file.Payload(hardSeq));
    }

    [Fact]
    public void A_prompt_upsert_and_delete_are_journaled_byte_for_byte()
    {
        using var file = EngramSetup.Enrolled();

        var saved = file.Writer.AddPrompt("s-1", "Why is <this> \"slow\"?", "engram");
        var created = file.Text("SELECT created_at FROM user_prompts WHERE sync_id = $id", ("$id", saved.SyncId));
        var deleted = file.Writer.DeletePrompt(saved.SyncId);

        Assert.Matches("^prompt-[0-9a-f]{16}$", saved.SyncId);
        Assert.Equal(
            $$"""{"sync_id":"{{saved.SyncId}}","session_id":"s-1","content":"Why is \u003cthis\u003e \"slow\"?","project":"engram","created_at":"{{created}}"}""",
            file.Payload(saved.Seqs.Single()));
        Assert.Equal(
            $$"""{"sync_id":"{{saved.SyncId}}","session_id":"s-1","content":"","project":"engram","deleted":true,"deleted_at":"{{EngramFile.Now}}","hard_delete":true}""",
            file.Payload(deleted.Single()));
    }

    [Fact]
    public void A_judged_relation_is_journaled_byte_for_byte_with_the_source_project()
    {
        using var file = EngramSetup.Enrolled();
        var source = file.Writer.AddObservation("s-1", "decision", "New", "the new way", "engram").SyncId;
        var target = file.Writer.AddObservation("s-1", "decision", "Old", "the old way", "engram").SyncId;

        var judged = file.Writer.JudgeRelation(source, target, "supersedes", "newer <wins>", 0.9);

        var (created, updated) = file.Rows("SELECT created_at, updated_at FROM memory_relations WHERE sync_id = $id",
            r => (r.GetString(0), r.GetString(1)), ("$id", judged.SyncId)).Single();
        Assert.Matches("^rel-[0-9a-f]{16}$", judged.SyncId);
        Assert.Equal(
            $$"""{"sync_id":"{{judged.SyncId}}","source_id":"{{source}}","target_id":"{{target}}","relation":"supersedes","reason":"newer \u003cwins\u003e","confidence":0.9,"judgment_status":"judged","marked_by_actor":"agent:claude-sonnet-4-6","marked_by_kind":"agent","marked_by_model":"claude-sonnet-4-6","project":"engram","created_at":"{{created}}","updated_at":"{{updated}}"}""",
            file.Payload(judged.Seqs.Single()));
    }

    [Fact]
    public void A_relation_to_an_observation_gone_since_it_was_picked_is_refused_and_journals_nothing()
    {
        // A pulled hard delete removed the source between the pick and the judgment: once, such a relation was written
        // with a blank project, kept on its device alone and never synced.
        using var file = EngramSetup.Enrolled();
        var source = file.Writer.AddObservation("s-1", "decision", "New", "the new way", "engram").SyncId;
        var target = file.Writer.AddObservation("s-1", "decision", "Old", "the old way", "engram").SyncId;
        file.Writer.DeleteObservation(source, hard: true);
        var journaled = file.Rows("SELECT COUNT(*) FROM sync_mutations", r => r.GetInt64(0)).Single();

        Assert.Throws<EngramNotFoundException>(() => file.Writer.JudgeRelation(source, target, "supersedes", null, 0.9));
        Assert.Throws<EngramNotFoundException>(() => file.Writer.JudgeRelation(target, source, "supersedes", null, 0.9));

        Assert.Equal(journaled, file.Rows("SELECT COUNT(*) FROM sync_mutations", r => r.GetInt64(0)).Single());
        Assert.Empty(file.Rows("SELECT sync_id FROM memory_relations", r => r.GetString(0)));
    }

    [Fact]
    public void Every_row_goes_to_cloud_from_local_pending_with_an_sqlite_time()
    {
        using var file = EngramSetup.Enrolled();
        file.Writer.AddObservation("s-1", "bugfix", "A", "content", "engram");

        var journal = file.Journal();

        Assert.Equal(2, journal.Count);
        Assert.All(journal, row =>
        {
            Assert.Equal(("cloud", "local", "engram", "pending"), (row.TargetKey, row.Source, row.Project, row.Disposition));
            Assert.Null(row.AckedAt);
            Assert.Matches(@"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", row.OccurredAt);
        });
    }
}

public sealed class When_a_project_is_not_enrolled
{
    [Fact]
    public void Its_writes_journal_nothing()
    {
        using var file = new EngramFile();
        var w = file.Writer;

        var seqs = new List<long>();
        seqs.AddRange(w.StartSession("s-1", "engram", EngramSetup.Directory));
        var o1 = w.AddObservation("s-1", "bugfix", "One", "first", "engram");
        var o2 = w.AddObservation("s-1", "bugfix", "Two", "second", "engram");
        seqs.AddRange(o1.Seqs.Concat(o2.Seqs));
        seqs.AddRange(w.UpdateObservation(o1.SyncId, "One again", null));
        seqs.AddRange(w.JudgeRelation(o1.SyncId, o2.SyncId, "related", null, 0.5).Seqs);
        seqs.AddRange(w.DeleteObservation(o2.SyncId, hard: true));
        var prompt = w.AddPrompt("s-1", "a prompt", "engram");
        seqs.AddRange(prompt.Seqs);
        seqs.AddRange(w.DeletePrompt(prompt.SyncId));
        seqs.AddRange(w.EndSession("s-1", "done"));

        Assert.Empty(seqs);
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM sync_mutations"));
        Assert.Equal("idle", file.Text("SELECT lifecycle FROM sync_state WHERE target_key = 'cloud'"));
        Assert.False(w.Enrolled("engram"));
    }

    [Fact]
    public void Enrolling_it_backfills_its_state_in_upstreams_order()
    {
        using var file = new EngramFile(clock: new EngramFile.SteppingClock());
        var w = file.Writer;
        w.StartSession("s-a", "engram", EngramSetup.Directory);
        w.StartSession("s-b", "engram", EngramSetup.Directory);
        var o1 = w.AddObservation("s-a", "bugfix", "Live one", "live", "engram").SyncId;
        var o2 = w.AddObservation("s-a", "bugfix", "Soft", "soft deleted", "engram").SyncId;
        var o3 = w.AddObservation("s-a", "bugfix", "Hard", "hard deleted", "engram").SyncId;
        var o4 = w.AddObservation("s-b", "bugfix", "Live two", "live too", "engram").SyncId;
        var p1 = w.AddPrompt("s-a", "kept prompt", "engram").SyncId;
        var p2 = w.AddPrompt("s-b", "deleted prompt", "engram").SyncId;
        var r1 = w.JudgeRelation(o1, o4, "related", "same area", 0.7).SyncId;
        w.JudgeRelation(o1, o2, "related", null, 0.7);   // an endpoint is soft-deleted: not backfilled
        w.JudgeRelation(o4, o3, "related", null, 0.7);   // orphaned by the hard delete: not backfilled
        w.DeleteObservation(o2, hard: false);
        w.DeleteObservation(o3, hard: true);
        w.DeletePrompt(p2);
        w.EndSession("s-b", "done");
        w.StartSession("s-c", "engram", EngramSetup.Directory);
        var p3 = w.AddPrompt("s-c", "chat only", "engram").SyncId;
        w.EndSession("s-c", null);
        w.DeleteSession("s-c");
        w.StartSession("s-x", "other", "/home/dev/src/other");
        w.AddObservation("s-x", "bugfix", "Elsewhere", "another project", "other");
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM sync_mutations"));

        var backfilled = w.EnrollProject("engram");

        var journal = file.Journal();
        Assert.Equal(backfilled, journal.Select(r => r.Seq));
        Assert.Equal(
        [
            ("session", "s-a", "upsert"), ("session", "s-b", "upsert"),
            ("observation", o1, "upsert"), ("observation", o4, "upsert"),
            ("observation", o2, "delete"),
            ("prompt", p1, "upsert"),
            ("prompt", p2, "delete"), ("prompt", p3, "delete"),
            ("observation", o3, "delete"), ("session", "s-c", "delete"),
            ("relation", r1, "upsert"),
        ], journal.Select(r => (r.Entity, r.EntityKey, r.Op)));
        Assert.All(journal, r => Assert.Equal("engram", r.Project));
        Assert.DoesNotContain("hard_delete", journal[4].Payload);
        Assert.EndsWith("\"hard_delete\":true}", journal[8].Payload);
        Assert.Contains("\"ended_at\":", journal[1].Payload);
        Assert.Empty(w.EnrollProject("engram"));
        Assert.True(w.Enrolled("engram"));
        Assert.False(w.Enrolled("other"));
    }
}

public sealed class When_a_session_upsert_is_journaled_again
{
    [Fact]
    public void The_pending_one_is_deleted_leaving_a_seq_gap()
    {
        using var file = new EngramFile();
        file.Writer.EnrollProject("engram");
        var started = file.Writer.StartSession("s-1", "engram", EngramSetup.Directory).Single();
        var observed = file.Writer.AddObservation("s-1", "bugfix", "Child", "before its parent", "engram").Seqs.Single();

        var ended = file.Writer.EndSession("s-1", "done").Single();

        Assert.Equal([observed, ended], file.Journal().Select(r => r.Seq));
        Assert.True(started < observed && observed < ended);
        Assert.Equal(2, file.Journal().Count(r => r.Entity == "session" || r.Entity == "observation"));
    }

    [Fact]
    public void An_acked_one_is_kept()
    {
        using var file = new EngramFile();
        file.Writer.EnrollProject("engram");
        var started = file.Writer.StartSession("s-1", "engram", EngramSetup.Directory).Single();
        file.Execute("UPDATE sync_mutations SET acked_at = datetime('now') WHERE seq = $seq", ("$seq", started));

        var ended = file.Writer.EndSession("s-1", "done").Single();

        Assert.Equal([started, ended], file.Journal().Select(r => r.Seq));
    }

    [Fact]
    public void A_renewed_runtime_session_is_not_journaled_again()
    {
        using var file = EngramSetup.Enrolled();

        Assert.Empty(file.Writer.StartSession("s-1", "engram", EngramSetup.Directory));
        Assert.Single(file.Journal());
    }

    [Fact]
    public void A_session_without_a_directory_is_never_journaled()
    {
        using var file = new EngramFile();
        file.Writer.EnrollProject("engram");

        Assert.Empty(file.Writer.StartSession("s-1", "engram", "  "));
        Assert.Empty(file.Writer.EndSession("s-1", "done"));
        Assert.Single(file.Writer.AddObservation("s-1", "bugfix", "Orphan", "its session never syncs", "engram").Seqs);
    }
}

public sealed class When_an_observation_is_hard_deleted
{
    [Fact]
    public void It_writes_a_tombstone_removes_the_row_and_orphans_its_relations()
    {
        using var file = EngramSetup.Enrolled();
        var kept = file.Writer.AddObservation("s-1", "bugfix", "Kept", "kept", "engram").SyncId;
        var gone = file.Writer.AddObservation("s-1", "bugfix", "Gone", "gone", "engram").SyncId;
        var relation = file.Writer.JudgeRelation(kept, gone, "related", null, 0.6).SyncId;

        var delete = file.Writer.DeleteObservation(gone, hard: true).Single();

        var tombstone = file.Rows("""
            SELECT session_id, project, deleted_at, hard_delete, active, last_mutation_seq, last_remote_mutation_seq
            FROM sync_delete_tombstones WHERE entity = 'observation' AND entity_key = $key
            """, r => (r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4), r.GetInt64(5), r.IsDBNull(6)),
            ("$key", gone)).Single();
        Assert.Equal(("s-1", "engram", EngramFile.Now, 1L, 1L, 0L, true), tombstone);
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM observations WHERE sync_id = $id", ("$id", gone)));
        Assert.Equal("orphaned", file.Text("SELECT judgment_status FROM memory_relations WHERE sync_id = $id", ("$id", relation)));
        Assert.Equal(("observation", gone, "delete"), file.Journal().Where(r => r.Seq == delete).Select(r => (r.Entity, r.EntityKey, r.Op)).Single());
    }

    [Fact]
    public void A_later_upsert_of_the_key_sets_the_tombstone_inactive_and_a_new_delete_floors_at_the_old_one()
    {
        using var file = EngramSetup.Enrolled();
        var key = file.Writer.AddObservation("s-1", "bugfix", "Back", "comes back", "engram").SyncId;
        var firstDelete = file.Writer.DeleteObservation(key, hard: true).Single();
        // The observation comes back, as a pulled upsert or an import brings it, and is then edited here.
        file.Execute("""
            INSERT INTO observations (sync_id, session_id, type, title, content, project, scope)
            VALUES ($key, 's-1', 'bugfix', 'Back', 'comes back', 'engram', 'project')
            """, ("$key", key));

        var upsert = file.Writer.UpdateObservation(key, "Back again", null).Single();

        Assert.Equal((0L, 0L), Tombstone(file, key));
        Assert.Equal("upsert", file.Journal().Single(r => r.Seq == upsert).Op);

        file.Writer.DeleteObservation(key, hard: true);
        Assert.Equal((1L, firstDelete), Tombstone(file, key));
    }

    private static (long Active, long Floor) Tombstone(EngramFile file, string key) =>
        file.Rows("SELECT active, last_mutation_seq FROM sync_delete_tombstones WHERE entity = 'observation' AND entity_key = $key",
            r => (r.GetInt64(0), r.GetInt64(1)), ("$key", key)).Single();
}

public sealed class When_a_session_is_deleted
{
    [Fact]
    public void It_is_refused_while_an_observation_even_soft_deleted_references_it()
    {
        using var file = EngramSetup.Enrolled();
        var observation = file.Writer.AddObservation("s-1", "bugfix", "Holds", "holds the session", "engram").SyncId;
        file.Writer.DeleteObservation(observation, hard: false);
        var before = file.Journal().Count;

        Assert.Throws<InvalidOperationException>(() => file.Writer.DeleteSession("s-1"));
        Assert.Equal(1, file.Number("SELECT COUNT(*) FROM sessions WHERE id = 's-1'"));
        Assert.Equal(before, file.Journal().Count);
    }

    [Fact]
    public void Its_prompts_are_deleted_first_then_the_session_with_tombstones()
    {
        using var file = EngramSetup.Enrolled();
        var first = file.Writer.AddPrompt("s-1", "first", "engram").SyncId;
        var second = file.Writer.AddPrompt("s-1", "second", "engram").SyncId;

        var seqs = file.Writer.DeleteSession("s-1");

        Assert.Equal([("prompt", first), ("prompt", second), ("session", "s-1")],
            file.Journal().Where(r => seqs.Contains(r.Seq)).Select(r => (r.Entity, r.EntityKey)));
        Assert.Equal(
            $$"""{"id":"s-1","project":"engram","deleted":true,"deleted_at":"{{EngramFile.Now}}","hard_delete":true}""",
            file.Payload(seqs[^1]));
        Assert.Equal(2, file.Number("SELECT COUNT(*) FROM prompt_tombstones WHERE session_id = 's-1' AND project = 'engram'"));
        Assert.Equal(1, file.Number("SELECT active FROM sync_delete_tombstones WHERE entity = 'session' AND entity_key = 's-1'"));
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM user_prompts"));
    }

    [Fact]
    public void Starting_it_again_sets_its_tombstone_inactive_even_unenrolled()
    {
        using var file = new EngramFile();
        file.Writer.StartSession("s-1", "engram", EngramSetup.Directory);
        file.Writer.DeleteSession("s-1");
        Assert.Equal(1, file.Number("SELECT active FROM sync_delete_tombstones WHERE entity_key = 's-1'"));

        file.Writer.StartSession("s-1", "engram", EngramSetup.Directory);

        Assert.Equal(0, file.Number("SELECT active FROM sync_delete_tombstones WHERE entity_key = 's-1'"));
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM sync_mutations"));
    }
}

public sealed class When_a_delete_reaches_an_unenrolled_project
{
    [Fact]
    public void Its_pending_upserts_are_superseded_not_deleted()
    {
        using var file = EngramSetup.Enrolled();
        var saved = file.Writer.AddObservation("s-1", "bugfix", "Soon gone", "soon gone", "engram");
        file.Execute("DELETE FROM sync_enrolled_projects WHERE project = 'engram'");   // what upstream's UnenrollProject does

        Assert.Empty(file.Writer.DeleteObservation(saved.SyncId, hard: false));

        var row = file.Rows("SELECT disposition, disposition_reason, disposition_evidence FROM sync_mutations WHERE seq = $seq",
            r => (r.GetString(0), r.GetString(1), r.GetString(2)), ("$seq", saved.Seqs.Single())).Single();
        Assert.Equal(("superseded", "local_entity_deleted",
            $$"""{"entity":"observation","entity_key":"{{saved.SyncId}}","project":"engram","trigger":"local_delete"}"""), row);
        Assert.Equal("pending", file.Text("SELECT lifecycle FROM sync_state WHERE target_key = 'cloud:engram'"));
    }
}

public sealed class When_content_exceeds_50000_bytes
{
    [Fact]
    public void It_is_cut_on_a_character_boundary_and_marked()
    {
        using var file = EngramSetup.Enrolled();
        // Byte 50,000 falls inside the three bytes of 日, so the cut moves back to before it.
        var content = new string('a', 49_999) + "日本語" + new string('b', 100);

        var saved = file.Writer.AddObservation("s-1", "discovery", "Big", content, "engram");

        var expected = new string('a', 49_999) + "... [truncated]";
        Assert.Equal(expected, file.Text("SELECT content FROM observations WHERE sync_id = $id", ("$id", saved.SyncId)));
        Assert.Equal(50_014, file.Number("SELECT length(CAST(content AS BLOB)) FROM observations WHERE sync_id = $id", ("$id", saved.SyncId)));
        Assert.Contains($"\"content\":\"{expected}\"", file.Payload(saved.Seqs.Single()));
    }

    [Fact]
    public void Content_of_exactly_50000_bytes_is_kept_whole()
    {
        using var file = EngramSetup.Enrolled();
        var content = new string('x', 49_997) + "é" + "y";

        var saved = file.Writer.AddObservation("s-1", "discovery", "Exact", content, "engram");

        Assert.Equal(50_000, Encoding.UTF8.GetByteCount(content));
        Assert.Equal(content, file.Text("SELECT content FROM observations WHERE sync_id = $id", ("$id", saved.SyncId)));
    }
}

public sealed class When_observations_are_saved
{
    [Fact]
    public void They_are_found_by_observations_fts_match_through_upstreams_triggers()
    {
        using var file = EngramSetup.Enrolled();
        var saved = file.Writer.AddObservation("s-1", "decision", "Cursor reconciliation", "reconcile the ackcursor after replays", "engram").SyncId;

        Assert.Equal([saved], Match(file, "\"ackcursor\""));

        file.Writer.UpdateObservation(saved, null, "now about a pullwindow instead");
        Assert.Empty(Match(file, "\"ackcursor\""));
        Assert.Equal([saved], Match(file, "\"pullwindow\""));

        file.Writer.DeleteObservation(saved, hard: false);
        Assert.Empty(Match(file, "\"pullwindow\""));
    }

    [Fact]
    public void A_same_topic_key_revises_the_row_in_place_and_keeps_the_old_version()
    {
        using var file = EngramSetup.Enrolled();
        var first = file.Writer.AddObservation("s-1", "decision", "Cursor v1", "first take", "engram", topicKey: "decision/cursor");
        file.Writer.StartSession("s-2", "engram", EngramSetup.Directory);

        var second = file.Writer.AddObservation("s-2", "decision", "Cursor v2", "second take", "engram", topicKey: "decision/cursor");

        Assert.Equal(first.SyncId, second.SyncId);
        Assert.Equal((2L, "s-2", "second take"), file.Rows("SELECT revision_count, session_id, content FROM observations",
            r => (r.GetInt64(0), r.GetString(1), r.GetString(2))).Single());
        Assert.Equal("first take", file.Text("SELECT content FROM observation_versions WHERE version = 1"));
        Assert.Contains("\"revision_count\":2,", file.Payload(second.Seqs.Single()));
    }

    [Fact]
    public void Writers_with_the_same_seed_make_the_same_sync_ids()
    {
        using var one = EngramSetup.Enrolled(seed: 42);
        using var two = EngramSetup.Enrolled(seed: 42);

        var ids = new[] { one, two }.Select(f => (
            f.Writer.AddObservation("s-1", "bugfix", "A", "a", "engram").SyncId,
            f.Writer.AddPrompt("s-1", "p", "engram").SyncId)).ToList();

        Assert.Equal(ids[0], ids[1]);
    }

    private static List<string> Match(EngramFile file, string query) =>
        file.Rows("""
            SELECT o.sync_id FROM observations_fts f JOIN observations o ON o.id = f.rowid
            WHERE observations_fts MATCH $query
            """, r => r.GetString(0), ("$query", query));
}

public sealed class When_a_write_is_journaled
{
    [Fact]
    public void Sync_state_cloud_and_the_projects_row_turn_pending_with_the_last_enqueued_seq()
    {
        using var file = new EngramFile();
        var w = file.Writer;
        Assert.Equal(("idle", 0L), State(file, "cloud"));
        w.EnrollProject("engram");
        w.EnrollProject("other");

        var engramSession = w.StartSession("s-1", "engram", EngramSetup.Directory).Single();
        Assert.Equal(("pending", engramSession), State(file, "cloud"));
        Assert.Equal(("pending", engramSession), State(file, "cloud:engram"));

        var otherSession = w.StartSession("s-2", "other", "/home/dev/src/other").Single();
        Assert.Equal(("pending", otherSession), State(file, "cloud"));
        Assert.Equal(("pending", engramSession), State(file, "cloud:engram"));
        Assert.Equal(("pending", otherSession), State(file, "cloud:other"));

        var observation = w.AddObservation("s-1", "bugfix", "A", "a", "engram").Seqs.Single();
        Assert.Equal(("pending", observation), State(file, "cloud"));
        Assert.Equal(("pending", observation), State(file, "cloud:engram"));
    }

    private static (string Lifecycle, long LastEnqueuedSeq) State(EngramFile file, string target) =>
        file.Rows("SELECT lifecycle, last_enqueued_seq FROM sync_state WHERE target_key = $target",
            r => (r.GetString(0), r.GetInt64(1)), ("$target", target)).Single();
}

public sealed class When_a_relation_is_judged
{
    [Fact]
    public void It_is_journaled_only_when_the_source_project_is_enrolled()
    {
        using var file = new EngramFile();
        var w = file.Writer;
        w.StartSession("s-1", "engram", EngramSetup.Directory);
        var a = w.AddObservation("s-1", "bugfix", "A", "a", "engram").SyncId;
        var b = w.AddObservation("s-1", "bugfix", "B", "b", "engram").SyncId;

        Assert.Empty(w.JudgeRelation(a, b, "related", null, 0.5).Seqs);
        w.EnrollProject("engram");
        var judged = w.JudgeRelation(b, a, "conflicts_with", null, null);

        var row = file.Journal().Single(r => r.Seq == judged.Seqs.Single());
        Assert.Equal(("relation", "upsert", "engram"), (row.Entity, row.Op, row.Project));
        Assert.DoesNotContain("confidence", row.Payload);
        Assert.Equal(2, file.Number("SELECT COUNT(*) FROM memory_relations"));
    }

    [Fact]
    public void Across_projects_it_is_refused()
    {
        using var file = new EngramFile();
        var w = file.Writer;
        w.StartSession("s-1", "engram", EngramSetup.Directory);
        w.StartSession("s-2", "other", "/home/dev/src/other");
        var a = w.AddObservation("s-1", "bugfix", "A", "a", "engram").SyncId;
        var b = w.AddObservation("s-2", "bugfix", "B", "b", "other").SyncId;

        Assert.Throws<InvalidOperationException>(() => w.JudgeRelation(a, b, "related", null, 0.5));
        Assert.Equal(0, file.Number("SELECT COUNT(*) FROM memory_relations"));
    }
}
