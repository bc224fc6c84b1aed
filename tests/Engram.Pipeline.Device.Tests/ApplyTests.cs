using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Apply;
using Engram.Pipeline.DeviceSync.Monitoring;
using Engram.Pipeline.DeviceSync.Pull;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Tests.ApplyTests;

public sealed class When_another_devices_observation_is_pulled
{
    [Fact]
    public void It_is_found_by_engrams_own_search()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));

        // As Go's json.Marshal writes it: < and > escaped.
        var result = engram.Pull(2, "observation", "upsert", "obs-1", """
            {"sync_id":"obs-1","session_id":"s1","type":"discovery","title":"Dockerfile \u003cbuild\u003e stage","content":"Use  a\n Multi-stage\tDockerfile","project":"team","scope":" Personal ","revision_count":0,"duplicate_count":3,"created_at":"2026-09-03 05:06:18","updated_at":"2026-10-09 10:51:23.521496944"}
            """);

        Assert.Equal(ApplyOutcome.Applied, result.Outcome);
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM observations_fts WHERE observations_fts MATCH '\"multi-stage\"'"));
        Assert.Equal("Dockerfile <build> stage", engram.Text("SELECT title FROM observations WHERE sync_id = 'obs-1'"));
        Assert.Equal("personal|1|3|2026-09-03 05:06:18|2026-10-09 10:51:23.521496944", engram.Text(
            "SELECT scope || '|' || revision_count || '|' || duplicate_count || '|' || created_at || '|' || updated_at FROM observations"));
        Assert.Equal(Sha256Hex("use a multi-stage dockerfile"), engram.Text("SELECT normalized_hash FROM observations"));
        // Pulled changes never enter upstream's journal, which would push them again.
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sync_mutations"));
        engram.AssertConsistent();
    }

    [Fact]
    public void A_soft_delete_takes_it_out_of_search_and_keeps_the_row()
    {
        using var engram = TestEngram.WithObservation("obs-1", "multi-stage builds");

        var result = engram.Pull(10, "observation", "delete", "obs-1",
            Payload.ObservationDelete("obs-1", deletedAt: "2026-10-10 08:00:00", hard: false));

        Assert.Equal(ApplyOutcome.Applied, result.Outcome);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM observations_fts WHERE observations_fts MATCH '\"multi-stage\"'"));
        Assert.Equal("2026-10-10 08:00:00|2026-10-10 08:00:00", engram.Text("SELECT deleted_at || '|' || updated_at FROM observations"));
        Assert.Equal("0|1|10", engram.Text("""
            SELECT t.hard_delete || '|' || t.active || '|' || f.last_mutation_seq FROM sync_delete_tombstones t
            JOIN sync_delete_tombstone_remote_floors f ON f.entity = t.entity AND f.entity_key = t.entity_key AND f.target_key = 'cloud:team'
            """));
        engram.AssertConsistent();
    }

    [Fact]
    public void A_hard_delete_removes_it_and_leaves_a_tombstone_with_this_targets_floor()
    {
        using var engram = TestEngram.WithObservation("obs-1", "multi-stage builds");

        var result = engram.Pull(10, "observation", "delete", "obs-1", Payload.ObservationDelete("obs-1", "2026-10-10 08:00:00.123456789", hard: true));

        Assert.Equal(ApplyOutcome.Applied, result.Outcome);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM observations"));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM observations_fts WHERE observations_fts MATCH '\"multi-stage\"'"));
        Assert.Equal("s1|team|2026-10-10 08:00:00.123456789|1|1", engram.Text(
            "SELECT session_id || '|' || project || '|' || deleted_at || '|' || hard_delete || '|' || active FROM sync_delete_tombstones"));
        Assert.Equal(10, engram.Count("SELECT last_mutation_seq FROM sync_delete_tombstone_remote_floors WHERE target_key = 'cloud:team'"));
        // Raised as upstream's own pull raises it: without it, upstream's enrollment backfill would take the active
        // tombstone for a local delete still to send and journal this device's copy of the delete as its own.
        Assert.Equal(10, engram.Count("SELECT last_remote_mutation_seq FROM sync_delete_tombstones"));
        engram.AssertConsistent();
    }

    [Fact]
    public void A_later_upsert_takes_every_field_but_keeps_blank_counts_and_times()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Pull(2, "observation", "upsert", "obs-1", Payload.Json(
            ("sync_id", "obs-1"), ("session_id", "s1"), ("type", "discovery"), ("title", "first"), ("content", "first body"),
            ("tool_name", "bash"), ("project", "team"), ("scope", "project"), ("topic_key", "arch/first"), ("revision_count", 4),
            ("duplicate_count", 2), ("last_seen_at", "2026-09-04 00:00:00"), ("created_at", "2026-09-03 05:06:18"),
            ("updated_at", "2026-09-03 05:06:18")));
        engram.Execute("UPDATE observations SET deleted_at = '2026-09-05 00:00:00', pinned = 1");

        engram.Pull(3, "observation", "upsert", "obs-1", Payload.Json(
            ("sync_id", "obs-1"), ("session_id", "s1"), ("type", "decision"), ("title", "second"), ("content", "second body"),
            ("scope", "project"), ("revision_count", 0), ("duplicate_count", 0)));

        Assert.Equal("decision|second|NULL|NULL|NULL|4|2|2026-09-04 00:00:00|2026-09-03 05:06:18|2026-09-03 05:06:18|NULL|1", engram.Text("""
            SELECT type || '|' || title || '|' || ifnull(tool_name, 'NULL') || '|' || ifnull(topic_key, 'NULL') || '|' || ifnull(project, 'NULL')
                || '|' || revision_count || '|' || duplicate_count || '|' || last_seen_at || '|' || created_at || '|' || updated_at
                || '|' || ifnull(deleted_at, 'NULL') || '|' || pinned
            FROM observations
            """));
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM observations_fts WHERE observations_fts MATCH 'second'"));
        engram.AssertConsistent();
    }

    private static string Sha256Hex(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}

public sealed class When_a_session_is_pulled_again
{
    [Fact]
    public void A_project_owned_session_keeps_its_project_and_mode()
    {
        using var engram = new TestEngram();
        engram.Execute("INSERT INTO sessions (id, project, ownership_mode, directory) VALUES ('s1', 'team', 'project_owned', '/a')");

        var result = engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1", project: "other", mode: "shared"));

        Assert.Equal(ApplyOutcome.Applied, result.Outcome);
        Assert.Equal("team|project_owned", engram.Text("SELECT project || '|' || ownership_mode FROM sessions"));
    }

    [Fact]
    public void A_shared_session_takes_the_new_project_and_an_absent_mode_becomes_shared()
    {
        using var engram = new TestEngram();
        engram.Execute("INSERT INTO sessions (id, project, ownership_mode, directory) VALUES ('s1', 'team', 'shared', '/a')");

        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1", project: "other", mode: null));

        Assert.Equal("other|shared", engram.Text("SELECT project || '|' || ownership_mode FROM sessions"));
    }

    [Fact]
    public void A_non_blank_directory_replaces_the_stored_one_and_a_blank_one_keeps_it()
    {
        // Not upstream's merge, which keeps a stored directory: a device's own later upsert (which rule 7 keeps) carries
        // its own directory, so keeping the stored one would leave devices different. The last in cloud order wins.
        using var engram = new TestEngram();
        engram.Execute("""
            INSERT INTO sessions (id, project, directory) VALUES ('s1', 'team', '/home/a/team'), ('s2', 'team', ' ' || char(9) || char(12288))
            """);

        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1", directory: "/home/b/team"));
        engram.Pull(2, "session", "upsert", "s2", Payload.Session("s2", directory: "/home/b/team"));
        engram.Pull(3, "session", "upsert", "s1", Payload.Session("s1", directory: " " + (char)9));

        Assert.Equal("s1 /home/b/team, s2 /home/b/team", engram.Text("SELECT group_concat(id || ' ' || directory, ', ') FROM sessions ORDER BY id"));
    }

    [Fact]
    public void A_blank_or_absent_started_at_keeps_the_stored_one_and_ended_at_and_summary_are_the_payloads()
    {
        using var engram = new TestEngram();
        engram.Execute("""
            INSERT INTO sessions (id, project, directory, started_at, ended_at, summary)
            VALUES ('s1', 'team', '/a', '2026-01-01 00:00:00.000000000', '2026-01-01 01:00:00', 'kept')
            """);

        engram.Pull(1, "session", "upsert", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("directory", "/a")));
        engram.Pull(2, "session", "upsert", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("directory", "/a"), ("started_at", " ")));

        // Engram journals a session from its whole row, so absent ended_at and summary are NULL there too (upstream's merge
        // would keep the stored ones, and devices that applied different upserts would disagree).
        Assert.Equal("2026-01-01 00:00:00.000000000|∅|∅",
            engram.Text("SELECT started_at || '|' || ifnull(ended_at, '∅') || '|' || ifnull(summary, '∅') FROM sessions"));

        engram.Pull(3, "session", "upsert", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("directory", "/a"),
            ("started_at", "2026-02-02 00:00:00"), ("summary", "")));

        // A present value replaces, even an empty summary, as upstream's COALESCE does.
        Assert.Equal("2026-02-02 00:00:00||", engram.Text("SELECT started_at || '|' || summary || '|' FROM sessions"));
    }

    [Fact]
    public void A_new_session_without_started_at_gets_the_current_time_in_gos_form()
    {
        using var engram = new TestEngram();

        engram.Pull(1, "session", "upsert", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("directory", "/a")));

        Assert.Equal(EngramTime.Go(engram.Clock.GetUtcNow()), engram.Text("SELECT started_at FROM sessions"));
        Assert.Matches(@"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}$", engram.Text("SELECT started_at FROM sessions"));
    }

    [Fact]
    public void A_project_owned_session_may_omit_its_directory_but_a_shared_one_may_not()
    {
        using var engram = new TestEngram();

        var owned = engram.Pull(1, "session", "upsert", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("ownership_mode", "project_owned")));
        var shared = engram.Pull(2, "session", "upsert", "s2", Payload.Json(("id", "s2"), ("project", "team"), ("ownership_mode", "shared")));

        Assert.Equal(ApplyOutcome.Applied, owned.Outcome);
        Assert.Equal(ApplyOutcome.Dead, shared.Outcome);
        Assert.Equal("s1", engram.Text("SELECT group_concat(id) FROM sessions"));
        Assert.Equal("pulled_session_directory_invalid", engram.Text("SELECT reason_code FROM sync_apply_deferred WHERE apply_status = 'dead'"));
    }
}

public sealed class When_an_observation_arrives_before_its_session
{
    [Fact]
    public void It_is_deferred_and_replayed_once_the_session_arrives()
    {
        using var engram = new TestEngram();

        var early = engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "waits for its session"));

        Assert.Equal(ApplyOutcome.Deferred, early.Outcome);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM observations"));
        Assert.Equal($"cloud|team|scoped|5|observation|obs-1|upsert|pulled_parent_session_missing|deferred|0|{EngramTime.Sqlite(engram.Clock.GetUtcNow())}",
            engram.Text("""
                SELECT target_key || '|' || project || '|' || scope_class || '|' || remote_seq || '|' || entity || '|' || entity_key || '|' || op
                    || '|' || reason_code || '|' || apply_status || '|' || retry_count || '|' || first_seen_at
                FROM sync_apply_deferred
                """));
        // Tried only once its session is here: a replay before that is no failure.
        Assert.Equal(0, engram.Replay());
        Assert.Equal(0, engram.Count("SELECT retry_count FROM sync_apply_deferred"));

        engram.Pull(6, "session", "upsert", "s1", Payload.Session("s1"));
        var applied = engram.Replay();

        Assert.Equal(1, applied);
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM observations_fts WHERE observations_fts MATCH 'session'"));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sync_apply_deferred"));
        Assert.Equal("applied", engram.Outcome(5));
        engram.AssertConsistent();
    }

    [Fact]
    public void An_older_deferred_upsert_does_not_overwrite_a_newer_applied_one()
    {
        using var engram = new TestEngram();
        engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "older body", title: "older"));
        engram.Pull(6, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Pull(7, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "newer body", title: "newer"));

        var applied = engram.Replay();

        Assert.Equal(0, applied);
        Assert.Equal("newer", engram.Text("SELECT title FROM observations"));
        Assert.Equal("skipped", engram.Outcome(5));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sync_apply_deferred"));
        engram.AssertConsistent();
    }

    [Fact]
    public void Two_deferred_upserts_replay_in_cloud_order_and_the_later_wins()
    {
        using var engram = new TestEngram();
        engram.Pull(7, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "later body", title: "later"));
        engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "earlier body", title: "earlier"));
        engram.Pull(8, "session", "upsert", "s1", Payload.Session("s1"));

        Assert.Equal(2, engram.Replay());
        Assert.Equal("later", engram.Text("SELECT title FROM observations"));
    }

    [Fact]
    public void A_delete_cancels_its_deferred_upsert()
    {
        using var engram = new TestEngram();
        engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "never lands"));

        engram.Pull(6, "observation", "delete", "obs-1", Payload.ObservationDelete("obs-1", "2026-10-10 08:00:00", hard: true));

        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sync_apply_deferred"));
        Assert.Equal("skipped", engram.Outcome(5));
        engram.Pull(7, "session", "upsert", "s1", Payload.Session("s1"));
        Assert.Equal(0, engram.Replay());
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM observations"));
        engram.AssertConsistent();
    }

    [Fact]
    public void One_that_still_cannot_apply_when_its_parents_are_here_becomes_dead_at_the_fifth_failed_replay()
    {
        // Both ends are here, but one is another project's: each replay is a real refusal.
        using var engram = TestEngram.WithObservation("obs-a", "source side");
        engram.Execute("""
            INSERT INTO sessions (id, project, directory) VALUES ('s9', 'other', '/o');
            INSERT INTO observations (sync_id, session_id, type, title, content, project) VALUES ('obs-b', 's9', 'note', 't', 'c', 'other');
            """);
        engram.Pull(5, "relation", "upsert", "rel-1", Payload.Relation("rel-1", "obs-a", "obs-b", "supersedes", "2026-10-01 00:00:00"));

        for (var replay = 0; replay < 4; replay++)
        {
            engram.Replay(limit: 1);
        }
        Assert.Equal("deferred|4", engram.Text("SELECT apply_status || '|' || retry_count FROM sync_apply_deferred"));
        engram.Replay(limit: 1);

        Assert.Equal("dead|5", engram.Text("SELECT apply_status || '|' || retry_count FROM sync_apply_deferred"));
        Assert.Contains("another project", engram.Text("SELECT last_error FROM sync_apply_deferred"));
        Assert.Equal("dead", engram.Outcome(5));
        Assert.Equal(0, engram.Replay());
    }
}

public sealed class When_deletes_gate_upserts_by_cloud_order
{
    [Fact]
    public void An_upsert_placed_before_a_pulled_delete_is_skipped_and_one_placed_after_it_applies()
    {
        using var engram = TestEngram.WithObservation("obs-1", "first life");
        engram.Pull(10, "observation", "delete", "obs-1", Payload.ObservationDelete("obs-1", "2026-10-10 08:00:00", hard: true));

        var before = engram.Pull(9, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "stale edit"));
        var atTheDelete = engram.Pull(10, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "same seq"));

        Assert.Equal(ApplyOutcome.Skipped, before.Outcome);
        Assert.Equal(ApplyOutcome.Skipped, atTheDelete.Outcome);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM observations"));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sync_apply_deferred"));

        var after = engram.Pull(11, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "second life"));

        Assert.Equal(ApplyOutcome.Applied, after.Outcome);
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM observations_fts WHERE observations_fts MATCH 'second life'"));
        Assert.Equal("0|10", engram.Text("""
            SELECT t.active || '|' || f.last_mutation_seq FROM sync_delete_tombstones t JOIN sync_delete_tombstone_remote_floors f USING (entity, entity_key)
            """));
        // The floor outlives the reactivation: an upsert older than the delete still stays out.
        Assert.Equal(ApplyOutcome.Skipped, engram.Pull(8, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "older")).Outcome);
        engram.AssertConsistent();
    }

    [Fact]
    public void A_local_hard_delete_blocks_until_its_placement_is_known_then_only_earlier_upserts()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        // What upstream's own hard delete leaves: an active tombstone, no floors.
        engram.Execute("""
            INSERT INTO sync_delete_tombstones (entity, entity_key, session_id, project, deleted_at, hard_delete, active, last_mutation_seq)
            VALUES ('observation', 'obs-1', 's1', 'team', '2026-10-10 08:00:00.000000000', 1, 1, 0)
            """);

        Assert.Equal(ApplyOutcome.Skipped, engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "x")).Outcome);

        engram.Run((applier, _) => applier.RecordOwnDeletePlaced("team", "observation", "obs-1", 10));

        Assert.Equal(ApplyOutcome.Skipped, engram.Pull(8, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "placed before")).Outcome);
        Assert.Equal(ApplyOutcome.Applied, engram.Pull(12, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "placed after")).Outcome);
        Assert.Equal("placed after", engram.Text("SELECT content FROM observations"));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sync_delete_tombstones WHERE last_remote_mutation_seq IS NOT NULL"));
    }

    [Fact]
    public void A_floor_of_another_target_does_not_block_this_one()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Execute("""
            INSERT INTO sync_delete_tombstones (entity, entity_key, deleted_at, hard_delete, active) VALUES ('observation', 'obs-1', '2026-10-10 08:00:00', 1, 1);
            INSERT INTO sync_delete_tombstone_remote_floors (target_key, entity, entity_key, last_mutation_seq) VALUES ('cloud:other', 'observation', 'obs-1', 100);
            """);

        var result = engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "applies"));

        Assert.Equal(ApplyOutcome.Applied, result.Outcome);
        Assert.Equal(0, engram.Count("SELECT active FROM sync_delete_tombstones"));
    }

    [Fact]
    public void A_session_upsert_placed_before_its_delete_is_skipped()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Pull(4, "session", "delete", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("deleted", true), ("hard_delete", true)));

        Assert.Equal(ApplyOutcome.Skipped, engram.Pull(3, "session", "upsert", "s1", Payload.Session("s1")).Outcome);
        Assert.Equal(ApplyOutcome.Applied, engram.Pull(5, "session", "upsert", "s1", Payload.Session("s1")).Outcome);
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM sessions"));
    }
}

public sealed class When_prompts_are_pulled
{
    [Fact]
    public void An_upsert_is_searchable_and_a_delete_leaves_a_prompt_tombstone()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));

        Assert.Equal(ApplyOutcome.Applied, engram.Pull(2, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "how do I rebuild the index")).Outcome);
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM prompts_fts WHERE prompts_fts MATCH 'rebuild'"));

        var deleted = engram.Pull(3, "prompt", "delete", "prompt-1", Payload.Json(
            ("sync_id", "prompt-1"), ("session_id", "s1"), ("content", ""), ("deleted", true), ("deleted_at", "2026-10-10 08:00:00.000000000"),
            ("hard_delete", true)));

        Assert.Equal(ApplyOutcome.Applied, deleted.Outcome);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM user_prompts"));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM prompts_fts WHERE prompts_fts MATCH 'rebuild'"));
        // The delete named no project: the prompt's own row supplied it.
        Assert.Equal("s1|team|2026-10-10 08:00:00.000000000", engram.Text("SELECT session_id || '|' || project || '|' || deleted_at FROM prompt_tombstones"));
        engram.AssertConsistent();
    }

    [Fact]
    public void An_upsert_not_newer_than_its_delete_is_stale_and_a_newer_one_applies()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Execute("INSERT INTO prompt_tombstones (sync_id, session_id, project, deleted_at) VALUES ('prompt-1', 's1', 'team', '2026-10-10 08:00:00.000000000')");

        var stale = engram.Pull(2, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "old words", createdAt: "2026-10-10 08:00:00"));
        var unreadable = engram.Pull(3, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "old words", createdAt: "yesterday"));
        var newer = engram.Pull(4, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "new words", createdAt: "2026-10-10T08:00:01Z"));

        Assert.Equal(ApplyOutcome.Skipped, stale.Outcome);
        Assert.Equal(ApplyOutcome.Skipped, unreadable.Outcome);
        Assert.Equal(ApplyOutcome.Applied, newer.Outcome);
        Assert.Equal("new words|2026-10-10T08:00:01Z", engram.Text("SELECT content || '|' || created_at FROM user_prompts"));
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM prompt_tombstones"));
        engram.AssertConsistent();
    }

    [Fact]
    public void A_prompt_before_its_session_is_deferred_until_it_arrives()
    {
        using var engram = new TestEngram();

        Assert.Equal(ApplyOutcome.Deferred, engram.Pull(2, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "waiting words")).Outcome);
        engram.Pull(3, "session", "upsert", "s1", Payload.Session("s1"));

        Assert.Equal(1, engram.Replay());
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM prompts_fts WHERE prompts_fts MATCH 'waiting'"));
        Assert.Equal("applied", engram.Outcome(2));
    }
}

public sealed class When_a_relation_is_pulled
{
    [Fact]
    public void It_waits_until_both_endpoints_exist_and_keeps_its_created_at_on_update()
    {
        using var engram = TestEngram.WithObservation("obs-a", "source side");

        var early = engram.Pull(3, "relation", "upsert", "rel-1", Payload.Relation("rel-1", "obs-a", "obs-b", "supersedes", "2026-10-01 00:00:00"));

        Assert.Equal(ApplyOutcome.Deferred, early.Outcome);
        Assert.Equal("relation_outer_project_authoritative|deferred", engram.Text("SELECT reason_code || '|' || apply_status FROM sync_apply_deferred"));
        Assert.Equal(0, engram.Replay());

        engram.Pull(4, "observation", "upsert", "obs-b", Payload.Observation("obs-b", "s1", "target side"));
        Assert.Equal(1, engram.Replay());
        Assert.Equal("obs-a|obs-b|supersedes|2026-10-01 00:00:00", engram.Text(
            "SELECT source_id || '|' || target_id || '|' || relation || '|' || created_at FROM memory_relations"));

        engram.Pull(5, "relation", "upsert", "rel-1", Payload.Relation("rel-1", "obs-a", "obs-b", "conflicts_with", "2026-10-05 00:00:00"));

        Assert.Equal("conflicts_with|2026-10-01 00:00:00|2026-10-05 00:00:00", engram.Text(
            "SELECT relation || '|' || created_at || '|' || updated_at FROM memory_relations"));
        engram.AssertConsistent();
    }

    [Fact]
    public void An_endpoint_of_another_project_keeps_it_waiting()
    {
        using var engram = TestEngram.WithObservation("obs-a", "source side");
        engram.Execute("""
            INSERT INTO sessions (id, project, directory) VALUES ('s9', 'other', '/o');
            INSERT INTO observations (sync_id, session_id, type, title, content, project) VALUES ('obs-b', 's9', 'note', 't', 'c', 'other');
            """);

        var result = engram.Pull(3, "relation", "upsert", "rel-1", Payload.Relation("rel-1", "obs-a", "obs-b", "supersedes", "2026-10-01 00:00:00"));

        Assert.Equal(ApplyOutcome.Deferred, result.Outcome);
        Assert.Contains("another project", result.Reason);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM memory_relations"));
    }
}

public sealed class When_a_pulled_mutation_is_bad
{
    [Fact]
    public void An_undecodable_payload_is_dead_and_listed_where_engram_looks()
    {
        using var engram = new TestEngram();

        var result = engram.Pull(7, "observation", "upsert", "obs-1", "{\"sync_id\": \"obs-1\", ");

        Assert.Equal(ApplyOutcome.Dead, result.Outcome);
        Assert.Equal($"cloud|team|scoped|7|dead|pulled_payload_undecodable|{EngramTime.Sqlite(engram.Clock.GetUtcNow())}", engram.Text("""
            SELECT target_key || '|' || project || '|' || scope_class || '|' || remote_seq || '|' || apply_status || '|' || reason_code
                || '|' || first_seen_at
            FROM sync_apply_deferred
            """));
        Assert.StartsWith("undecodable payload", engram.Text("SELECT last_error FROM sync_apply_deferred"));
        Assert.StartsWith("pipeline-observation-", engram.Text("SELECT sync_id FROM sync_apply_deferred"));
        // What upstream's status counts (CountDeferredAndDeadForScope('cloud', '')).
        Assert.Equal(1, engram.Count("""
            SELECT count(*) FROM sync_apply_deferred
            WHERE apply_status = 'dead' AND target_key = 'cloud' AND scope_class != 'legacy_unscoped'
            """));
    }

    [Fact]
    public void A_payload_whose_id_differs_from_its_key_is_dead()
    {
        using var engram = new TestEngram();

        var session = engram.Pull(1, "session", "upsert", "s1", Payload.Session("s2"));
        var observation = engram.Pull(2, "observation", "upsert", "obs-1", Payload.Observation("obs-2", "s1", "x"));
        var prompt = engram.Pull(3, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-2", "s1", "x"));
        var relation = engram.Pull(4, "relation", "upsert", "rel-1", Payload.Relation("rel-2", "a", "b", "supersedes", "2026-10-01 00:00:00"));

        Assert.All([session, observation, prompt, relation], result => Assert.Equal(ApplyOutcome.Dead, result.Outcome));
        Assert.Equal("pulled_relation_invalid,sync_observation_identity_invalid,sync_prompt_identity_invalid,sync_session_identity_invalid",
            engram.Text("SELECT group_concat(reason_code) FROM (SELECT reason_code FROM sync_apply_deferred ORDER BY reason_code)"));
        Assert.Equal(0, engram.Count("SELECT (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM observations)"));
    }

    [Fact]
    public void A_redelivery_lands_on_its_row_and_two_mutations_of_one_key_keep_theirs()
    {
        using var engram = new TestEngram();

        engram.Pull(7, "observation", "upsert", "obs-1", "not json");
        engram.Pull(7, "observation", "upsert", "obs-1", "not json");
        engram.Pull(8, "observation", "upsert", "obs-1", "not json");
        engram.Pull(9, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "waits"));
        engram.Pull(9, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "waits"));

        Assert.Equal("7 dead, 8 dead, 9 deferred", engram.Text(
            "SELECT group_concat(remote_seq || ' ' || apply_status, ', ') FROM (SELECT * FROM sync_apply_deferred ORDER BY remote_seq)"));
    }

    [Fact]
    public void An_unknown_entity_or_op_is_dead()
    {
        using var engram = new TestEngram();

        var entity = engram.Pull(1, "memory", "upsert", "m-1", "{}");
        var op = engram.Pull(2, "observation", "patch", "obs-1", Payload.Observation("obs-1", "s1", "x"));
        var relationDelete = engram.Pull(3, "relation", "delete", "rel-1", Payload.Relation("rel-1", "a", "b", "supersedes", "2026-10-01 00:00:00"));

        Assert.All([entity, op, relationDelete], result => Assert.Equal(ApplyOutcome.Dead, result.Outcome));
        Assert.Equal("pulled_entity_unknown,pulled_op_unknown,pulled_op_unknown",
            engram.Text("SELECT group_concat(reason_code) FROM (SELECT reason_code FROM sync_apply_deferred ORDER BY remote_seq)"));
    }

    [Fact]
    public void An_invalid_ownership_mode_is_dead()
    {
        using var engram = new TestEngram();

        var result = engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1", mode: "borrowed"));

        Assert.Equal(ApplyOutcome.Dead, result.Outcome);
        Assert.Contains("borrowed", result.Reason);
        Assert.Equal(0, engram.Count("SELECT COUNT(*) FROM sessions"));
    }

    [Fact]
    public void A_constraint_refusal_is_dead_and_leaves_nothing_half_done()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Execute("""
            INSERT INTO prompt_tombstones (sync_id, session_id, project, deleted_at) VALUES ('prompt-1', 's1', 'team', '2026-10-10 08:00:00');
            CREATE TRIGGER refuse_prompt BEFORE INSERT ON user_prompts WHEN new.content = 'refused' BEGIN SELECT RAISE(ABORT, 'refused here'); END;
            """);

        // Applying deletes the prompt's older tombstone first, then the insert is refused.
        var result = engram.Pull(2, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "refused", createdAt: "2026-10-11 00:00:00"));

        Assert.Equal(ApplyOutcome.Dead, result.Outcome);
        Assert.Equal(1, engram.Count("SELECT COUNT(*) FROM prompt_tombstones"));
        Assert.Equal("pulled_constraint_refused", engram.Text("SELECT reason_code FROM sync_apply_deferred"));
    }
}

public sealed class When_a_session_delete_is_pulled
{
    [Fact]
    public void With_observations_still_in_it_it_is_dead_and_nothing_is_deleted()
    {
        using var engram = TestEngram.WithObservation("obs-1", "still here");
        engram.Pull(3, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "still asked"));

        var result = engram.Pull(4, "session", "delete", "s1", Payload.Json(("id", "s1"), ("project", "team"), ("deleted", true), ("hard_delete", true)));

        Assert.Equal(ApplyOutcome.Dead, result.Outcome);
        Assert.Equal("1|1|1|0", engram.Text("""
            SELECT (SELECT COUNT(*) FROM sessions) || '|' || (SELECT COUNT(*) FROM user_prompts) || '|' || (SELECT COUNT(*) FROM observations)
                || '|' || (SELECT COUNT(*) FROM sync_delete_tombstones)
            """));
        Assert.Equal("pulled_session_has_observations", engram.Text("SELECT reason_code FROM sync_apply_deferred WHERE apply_status = 'dead'"));
        engram.AssertConsistent();
    }

    [Fact]
    public void Without_observations_it_takes_its_prompts_and_leaves_a_tombstone()
    {
        using var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Pull(2, "prompt", "upsert", "prompt-1", Payload.Prompt("prompt-1", "s1", "asked once"));

        var result = engram.Pull(3, "session", "delete", "s1", Payload.Json(
            ("id", "s1"), ("project", "Team"), ("deleted", true), ("deleted_at", "2026-10-10 08:00:00.000000000"), ("hard_delete", true)));

        Assert.Equal(ApplyOutcome.Applied, result.Outcome);
        Assert.Equal(0, engram.Count("SELECT (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM user_prompts)"));
        Assert.Equal("session|s1|team|1|1|3", engram.Text("""
            SELECT t.entity || '|' || t.entity_key || '|' || t.project || '|' || t.hard_delete || '|' || t.active || '|' || f.last_mutation_seq
            FROM sync_delete_tombstones t JOIN sync_delete_tombstone_remote_floors f USING (entity, entity_key)
            """));
        engram.AssertConsistent();
    }
}

/// <summary>Payloads as upstream's journal writes them (Go's json.Marshal field names; absent fields left out).</summary>
internal static class Payload
{
    public static string Json(params (string Key, object? Value)[] fields) =>
        JsonSerializer.Serialize(fields.Where(field => field.Value is not null).ToDictionary(field => field.Key, field => field.Value));

    public static string Session(string id, string project = "team", string? directory = "/home/a/team", string? mode = "shared") =>
        Json(("id", id), ("project", project), ("ownership_mode", mode), ("directory", directory), ("started_at", "2026-09-03 05:06:18.521496944"));

    public static string Observation(string syncId, string sessionId, string content, string title = "a note") =>
        Json(("sync_id", syncId), ("session_id", sessionId), ("type", "discovery"), ("title", title), ("content", content), ("project", "team"),
            ("scope", "project"), ("revision_count", 1), ("duplicate_count", 1), ("created_at", "2026-09-03 05:06:18"),
            ("updated_at", "2026-09-03 05:06:18"));

    public static string ObservationDelete(string syncId, string deletedAt, bool hard) =>
        Json(("sync_id", syncId), ("session_id", "s1"), ("type", ""), ("title", ""), ("content", ""), ("project", "team"), ("scope", ""),
            ("revision_count", 0), ("duplicate_count", 0), ("deleted", true), ("deleted_at", deletedAt), ("hard_delete", hard ? true : null));

    public static string Prompt(string syncId, string sessionId, string content, string createdAt = "2026-09-03 05:07:00") =>
        Json(("sync_id", syncId), ("session_id", sessionId), ("content", content), ("project", "team"), ("created_at", createdAt));

    public static string Relation(string syncId, string sourceId, string targetId, string relation, string at) =>
        Json(("sync_id", syncId), ("source_id", sourceId), ("target_id", targetId), ("relation", relation), ("confidence", 0.8),
            ("judgment_status", "judged"), ("marked_by_actor", "agent"), ("marked_by_kind", "llm"), ("project", "team"),
            ("created_at", at), ("updated_at", at));
}

/// <summary>
/// An Engram database in a temp file, made as upstream makes it, that pulls as the device does: each call applies in a
/// transaction of its own and notes the mutation in <c>pipeline_applied</c>, as the caller of the applier does.
/// </summary>
internal sealed class TestEngram : IDisposable
{
    private const string Project = "team";
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("engram-apply-test-");
    private readonly EngramDatabase _database;

    public TestEngram()
    {
        _database = new EngramDatabase($"Data Source={Path.Combine(_directory.FullName, "engram.db")}");
        _database.Attach("device-b", TimeProvider.System);
    }

    public FixedClock Clock { get; } = new(new DateTimeOffset(2026, 10, 9, 10, 51, 23, TimeSpan.Zero).AddTicks(5_214_969));

    public static TestEngram WithObservation(string syncId, string content)
    {
        var engram = new TestEngram();
        engram.Pull(1, "session", "upsert", "s1", Payload.Session("s1"));
        engram.Pull(2, "observation", "upsert", syncId, Payload.Observation(syncId, "s1", content));
        return engram;
    }

    public ApplyResult Pull(long cloudSeq, string entity, string op, string key, string payload) => Run((applier, transaction) =>
    {
        var result = applier.Apply(new PulledMutation(Project, cloudSeq, entity, op, key, payload));
        using var noted = transaction.Command("""
            INSERT INTO pipeline_applied (target_key, cloud_seq, origin_device, origin_local_seq, entity, entity_key, op, outcome, applied_at)
            VALUES ('cloud:team', $seq, 'device-a', $seq, $entity, $key, $op, $outcome, '2026-10-09T10:51:23Z')
            ON CONFLICT DO NOTHING
            """, ("$seq", cloudSeq), ("$entity", entity), ("$key", key), ("$op", op), ("$outcome", result.Outcome.ToString().ToLowerInvariant()));
        noted.ExecuteNonQuery();
        return result;
    });

    public int Replay(int limit = 100) => Run((applier, _) => applier.ReplayDeferred(Project, limit));

    public T Run<T>(Func<EngramApplier, SqliteTransaction, T> work)
    {
        using var connection = _database.Open();
        using var transaction = connection.BeginTransaction();
        T result;
        using (var applier = new EngramApplier(transaction, Clock))
        {
            result = work(applier, transaction);
        }
        transaction.Commit();
        return result;
    }

    public void Run(Action<EngramApplier, SqliteTransaction> work) => Run((applier, transaction) =>
    {
        work(applier, transaction);
        return 0;
    });

    public string? Outcome(long cloudSeq) => Text($"SELECT outcome FROM pipeline_applied WHERE target_key = 'cloud:team' AND cloud_seq = {cloudSeq}");

    public void Execute(string sql)
    {
        using var connection = _database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public long Count(string sql) => (long)Scalar(sql)!;

    public string? Text(string sql) => Scalar(sql) as string;

    /// <summary>
    /// SQLite's own checks, foreign keys, and both full-text indexes: sound, and holding exactly the rows upstream's
    /// triggers put there (live observations, every prompt; a soft-deleted observation is left out on purpose).
    /// </summary>
    public void AssertConsistent()
    {
        using var connection = _database.Open();
        string? Ask(string sql)
        {
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            return command.ExecuteScalar()?.ToString();
        }
        Assert.Equal("ok", Ask("PRAGMA integrity_check"));
        Assert.Null(Ask("PRAGMA foreign_key_check"));
        Ask("""
            INSERT INTO observations_fts (observations_fts) VALUES ('integrity-check');
            INSERT INTO prompts_fts (prompts_fts) VALUES ('integrity-check');
            CREATE VIRTUAL TABLE temp.observation_terms USING fts5vocab(main, 'observations_fts', 'instance');
            CREATE VIRTUAL TABLE temp.prompt_terms USING fts5vocab(main, 'prompts_fts', 'instance');
            """);
        Assert.Equal(Ask("SELECT group_concat(id) FROM (SELECT id FROM observations WHERE deleted_at IS NULL ORDER BY id)"),
            Ask("SELECT group_concat(doc) FROM (SELECT DISTINCT doc FROM observation_terms ORDER BY doc)"));
        Assert.Equal(Ask("SELECT group_concat(id) FROM (SELECT id FROM user_prompts ORDER BY id)"),
            Ask("SELECT group_concat(doc) FROM (SELECT DISTINCT doc FROM prompt_terms ORDER BY doc)"));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
    }

    private object? Scalar(string sql)
    {
        using var connection = _database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}

internal sealed class FixedClock(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;
}

public sealed class When_a_deferred_rows_parent_never_comes
{
    private const long Horizon = EngramApplier.DeferralHorizon;

    [Fact]
    public async Task It_is_dead_once_the_log_is_the_horizon_past_it_and_its_parent_coming_later_does_not_revive_it()
    {
        using var device = TestDevice.Create();
        var pages = new PageApplier(device.Database, device.Identity, TimeProvider.System);
        await pages.ApplyAsync(TestDevice.Team, Page(
            Row(1, "observation", "obs-1", Payload.Observation("obs-1", "s2", "waits for s2")),
            Row(2, "observation", "obs-2", Payload.Observation("obs-2", "s3", "waits for s3"))), CancellationToken.None);
        // The log runs on with rows of no concern to these two (as if pulled), up to the horizon past the first.
        device.Execute("UPDATE sync_state SET unified_cursor = $seq WHERE target_key = 'cloud:team'", ("$seq", Horizon));

        await pages.ApplyAsync(TestDevice.Team, Page(Row(Horizon + 1, "session", "s3", Payload.Session("s3"))), CancellationToken.None);
        await pages.ApplyAsync(TestDevice.Team, Page(Row(Horizon + 2, "session", "s2", Payload.Session("s2"))), CancellationToken.None);

        Assert.Equal(["obs-2"], device.Rows("SELECT sync_id FROM observations"));
        Assert.Equal(["1|dead", "2|applied"], device.Rows("SELECT cloud_seq, outcome FROM pipeline_applied WHERE entity = 'observation' ORDER BY cloud_seq"));
        Assert.Equal([$"obs-1|dead|pulled_parent_session_missing|its parent did not come within {Horizon} cloud seqs"],
            device.Rows("SELECT entity_key, apply_status, reason_code, last_error FROM sync_apply_deferred"));
        var counts = SyncCounts.Read(device.Database, TestDevice.Team);
        Assert.Equal((0, 1, Horizon + 2), (counts.Deferred, counts.Dead, counts.Cursor));
    }

    [Fact]
    public void One_whose_parent_is_here_waits_for_its_replay_instead()
    {
        using var engram = new TestEngram();
        engram.Pull(5, "observation", "upsert", "obs-1", Payload.Observation("obs-1", "s1", "its session came just in time"));
        engram.Pull(Horizon + 5, "session", "upsert", "s1", Payload.Session("s1"));

        Assert.Equal(0, engram.Run((applier, _) => applier.ExpireDeferred("team", Horizon + 6)));
        Assert.Equal(1, engram.Replay());
        Assert.Equal("applied", engram.Outcome(5));
    }

    private static MutationsPage Page(params CloudMutation[] rows) =>
        new() { TargetKey = TestDevice.Project, Mutations = rows, ThroughSeq = rows[^1].CloudSeq, Head = rows[^1].CloudSeq };

    private static CloudMutation Row(long seq, string entity, string key, string payload) => new()
    {
        CloudSeq = seq, DeviceId = "device-b", LocalSeq = seq, Entity = entity, Op = "upsert", EntityKey = key, Payload = payload,
        OccurredAt = DateTimeOffset.UnixEpoch,
    };
}
