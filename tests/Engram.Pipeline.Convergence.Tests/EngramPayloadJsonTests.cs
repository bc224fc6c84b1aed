using System.Text;
using Engram.Pipeline.Simulation.EngramApp;

namespace Engram.Pipeline.Convergence.Tests;

public sealed class When_payloads_are_marshalled_as_go_marshals_them
{
    [Fact]
    public void A_session_upsert_has_go_field_order_and_leaves_out_empty_fields()
    {
        var started = new SessionPayload
        {
            Id = "s-1", Project = "engram", OwnershipMode = "shared", Directory = "/home/dev/src/engram", StartedAt = "2026-10-09 10:51:23.521496944",
        };
        var ended = started with { OwnershipMode = "", EndedAt = "2026-10-09 11:02:00", Summary = "" };

        Assert.Equal(
            """{"id":"s-1","project":"engram","ownership_mode":"shared","directory":"/home/dev/src/engram","started_at":"2026-10-09 10:51:23.521496944"}""",
            started.ToJson());
        Assert.Equal(
            """{"id":"s-1","project":"engram","directory":"/home/dev/src/engram","started_at":"2026-10-09 10:51:23.521496944","ended_at":"2026-10-09 11:02:00","summary":""}""",
            ended.ToJson());
    }

    [Fact]
    public void A_session_delete_carries_only_id_project_and_the_delete_fields()
    {
        var delete = new SessionPayload { Id = "s-1", Project = "engram", Deleted = true, DeletedAt = "2026-10-09 10:51:23.521496944", HardDelete = true };

        Assert.Equal("""{"id":"s-1","project":"engram","deleted":true,"deleted_at":"2026-10-09 10:51:23.521496944","hard_delete":true}""", delete.ToJson());
    }

    [Fact]
    public void An_observation_upsert_writes_nil_pointers_out_and_counts_in()
    {
        var upsert = new ObservationPayload
        {
            SyncId = "obs-0123456789abcdef", SessionId = "s-1", Type = "decision", Title = "Use <b>WAL</b>", Content = "a & b",
            Project = "engram", Scope = "project", TopicKey = "decision/wal", RevisionCount = 2, DuplicateCount = 1,
            LastSeenAt = "2026-09-03 05:06:18", CreatedAt = "2026-09-03 05:06:18", UpdatedAt = "2026-09-03 05:07:00",
        };

        Assert.Equal(
            """{"sync_id":"obs-0123456789abcdef","session_id":"s-1","type":"decision","title":"Use \u003cb\u003eWAL\u003c/b\u003e","content":"a \u0026 b","project":"engram","scope":"project","topic_key":"decision/wal","revision_count":2,"duplicate_count":1,"last_seen_at":"2026-09-03 05:06:18","created_at":"2026-09-03 05:06:18","updated_at":"2026-09-03 05:07:00"}""",
            upsert.ToJson());
        Assert.Contains("\"tool_name\":\"\",", (upsert with { ToolName = "" }).ToJson());
    }

    [Fact]
    public void An_observation_delete_keeps_empty_type_title_content_scope_and_zero_counts()
    {
        var soft = new ObservationPayload { SyncId = "obs-1", SessionId = "s-1", Project = "engram", Deleted = true, DeletedAt = "2026-09-03 05:06:18" };

        Assert.Equal(
            """{"sync_id":"obs-1","session_id":"s-1","type":"","title":"","content":"","project":"engram","scope":"","revision_count":0,"duplicate_count":0,"deleted":true,"deleted_at":"2026-09-03 05:06:18"}""",
            soft.ToJson());
        Assert.EndsWith("""
            "deleted":true,"deleted_at":"2026-09-03 05:06:18","hard_delete":true}
            """, (soft with { HardDelete = true }).ToJson());
    }

    [Fact]
    public void A_prompt_upsert_and_delete_have_go_field_order()
    {
        var upsert = new PromptPayload { SyncId = "prompt-1", SessionId = "s-1", Content = "why \"this\"?", Project = "engram", CreatedAt = "2026-09-03 05:06:18" };
        var delete = new PromptPayload
        {
            SourceInboxId = "inbox-7", SyncId = "prompt-1", SessionId = "s-1", Project = "engram", Deleted = true,
            DeletedAt = "2026-10-09 10:51:23.521496944", HardDelete = true,
        };

        Assert.Equal("""{"sync_id":"prompt-1","session_id":"s-1","content":"why \"this\"?","project":"engram","created_at":"2026-09-03 05:06:18"}""", upsert.ToJson());
        Assert.Equal(
            """{"source_inbox_id":"inbox-7","sync_id":"prompt-1","session_id":"s-1","content":"","project":"engram","deleted":true,"deleted_at":"2026-10-09 10:51:23.521496944","hard_delete":true}""",
            delete.ToJson());
    }

    [Fact]
    public void A_relation_writes_confidence_as_a_go_float_and_project_and_times_always()
    {
        var relation = new RelationPayload
        {
            SyncId = "rel-1", SourceId = "obs-1", TargetId = "obs-2", Relation = "supersedes", Reason = "newer", Confidence = 0.85,
            JudgmentStatus = "judged", MarkedByActor = "agent:claude", MarkedByKind = "agent", Project = "engram",
            CreatedAt = "2026-09-03 05:06:18", UpdatedAt = "2026-09-03 05:06:18",
        };

        Assert.Equal(
            """{"sync_id":"rel-1","source_id":"obs-1","target_id":"obs-2","relation":"supersedes","reason":"newer","confidence":0.85,"judgment_status":"judged","marked_by_actor":"agent:claude","marked_by_kind":"agent","project":"engram","created_at":"2026-09-03 05:06:18","updated_at":"2026-09-03 05:06:18"}""",
            relation.ToJson());
        Assert.Contains("\"confidence\":0,", (relation with { Confidence = 0 }).ToJson());
        Assert.DoesNotContain("confidence", (relation with { Confidence = null }).ToJson());
    }

    [Fact]
    public void Strings_are_escaped_as_go_escapes_them()
    {
        var json = new StringBuilder();

        GoJson.AppendString(json, "<a href=\"x\">&amp;</a>\n\r\t\\ \b\f\u0001\u001f\u007f é 日本 🚀 \u2028\u2029 \ud800!");

        Assert.Equal(
            "\"\\u003ca href=\\\"x\\\"\\u003e\\u0026amp;\\u003c/a\\u003e\\n\\r\\t\\\\ \\b\\f\\u0001\\u001f\u007f é 日本 🚀 \\u2028\\u2029 \\ufffd!\"",
            json.ToString());
    }

    [Theory]
    [InlineData(0.85, "0.85")]
    [InlineData(1.0, "1")]
    [InlineData(0.0, "0")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(0.000001, "0.000001")]
    [InlineData(1e-7, "1e-7")]
    [InlineData(1.5e-10, "1.5e-10")]
    [InlineData(123456789.125, "123456789.125")]
    [InlineData(1e20, "100000000000000000000")]
    [InlineData(1e21, "1e+21")]
    [InlineData(1.2345e300, "1.2345e+300")]
    public void Floats_are_written_as_go_writes_a_float64(double value, string expected)
    {
        Assert.Equal(expected, GoJson.Float(value));
    }
}
