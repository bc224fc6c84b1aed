using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>
/// What enrolling a project journals (upstream's backfillProjectSyncMutationsTx): its current state, in this order,
/// each key skipped when a pending or quarantined local row of it is already journaled (acked rows count: their
/// disposition stays pending). Every row goes through the normal journaling, so blank-directory sessions drop out.
/// </summary>
internal static class EngramBackfill
{
    private const string NotJournaled = """
        NOT EXISTS (SELECT 1 FROM sync_mutations sm WHERE sm.target_key = 'cloud' AND sm.entity = '{0}' AND sm.entity_key = {1}
            AND sm.source = 'local' {2} AND sm.disposition IN ('pending', 'quarantined'))
        """;

    public static void Run(EngramTransaction tx, string project)
    {
        var p = ("$project", (object?)project);
        foreach (var session in tx.Rows($"""
                     SELECT id, project, ifnull(ownership_mode, ''), directory, started_at, ended_at, summary FROM sessions
                     WHERE project = $project AND trim(id, $ws) != '' AND {Missing("session", "sessions.id")}
                     ORDER BY started_at ASC, id ASC
                     """, ReadSession, p, ("$ws", EngramRules.WhitespaceTrimSet)))
        {
            tx.Journal(session, "upsert");
        }
        foreach (var observation in tx.Rows($"""
                     SELECT o.sync_id, o.session_id, o.type, o.title, o.content, o.tool_name, o.project, o.scope, o.topic_key,
                         o.revision_count, o.duplicate_count, o.last_seen_at, o.created_at, o.updated_at
                     FROM observations o LEFT JOIN sessions s ON s.id = o.session_id
                     WHERE {OfProject("o")} AND o.deleted_at IS NULL AND {Missing("observation", "o.sync_id")}
                     ORDER BY o.id ASC
                     """, r => ReadObservation(r, 0), p))
        {
            tx.Journal(observation, "upsert");
        }
        foreach (var deleted in tx.Rows($"""
                     SELECT o.sync_id, o.session_id, o.project, o.deleted_at
                     FROM observations o LEFT JOIN sessions s ON s.id = o.session_id
                     WHERE {OfProject("o")} AND o.deleted_at IS NOT NULL AND {Missing("observation", "o.sync_id", "delete")}
                     ORDER BY o.id ASC
                     """, r => new ObservationPayload
                     {
                         SyncId = r.GetString(0),
                         SessionId = r.GetString(1),
                         Project = Text(r, 2),
                         Deleted = true,
                         DeletedAt = r.GetString(3),
                     }, p))
        {
            tx.Journal(deleted, "delete");
        }
        foreach (var prompt in tx.Rows($"""
                     SELECT p.sync_id, p.session_id, p.content, p.project, p.created_at, ifnull(p.source_inbox_id, '')
                     FROM user_prompts p LEFT JOIN sessions s ON s.id = p.session_id
                     WHERE {OfProject("p")} AND {Missing("prompt", "p.sync_id")}
                     ORDER BY p.id ASC
                     """, r => new PromptPayload
                     {
                         SyncId = r.GetString(0),
                         SessionId = r.GetString(1),
                         Content = r.GetString(2),
                         Project = Text(r, 3),
                         CreatedAt = r.GetString(4),
                         SourceInboxId = r.GetString(5),
                     }, p))
        {
            tx.Journal(prompt, "upsert");
        }
        foreach (var tombstone in tx.Rows($"""
                     SELECT t.sync_id, ifnull(t.session_id, ''), t.project, t.deleted_at, ifnull(t.source_inbox_id, '')
                     FROM prompt_tombstones t LEFT JOIN sessions s ON s.id = t.session_id
                     WHERE {OfProject("t")} AND {Missing("prompt", "t.sync_id", "delete")}
                     ORDER BY t.deleted_at ASC
                     """, r => new PromptPayload
                     {
                         SyncId = r.GetString(0),
                         SessionId = r.GetString(1),
                         Project = Text(r, 2),
                         SourceInboxId = r.GetString(4),
                         Deleted = true,
                         DeletedAt = r.GetString(3),
                         HardDelete = true,
                     }, p))
        {
            tx.Journal(tombstone, "delete");
        }
        // Only floorless active tombstones whose delete is not still waiting unacked: after its delete was acked, a
        // local tombstone qualifies again and its delete is journaled anew.
        foreach (var tombstone in tx.Rows("""
                     SELECT entity, entity_key, ifnull(session_id, ''), project, deleted_at, hard_delete
                     FROM sync_delete_tombstones t
                     WHERE project = $project AND t.active = 1 AND t.last_remote_mutation_seq IS NULL
                       AND NOT EXISTS (SELECT 1 FROM sync_mutations sm WHERE sm.target_key = 'cloud' AND sm.entity = t.entity
                           AND sm.entity_key = t.entity_key AND sm.op = 'delete' AND sm.source = 'local' AND sm.acked_at IS NULL
                           AND sm.disposition IN ('pending', 'quarantined'))
                     ORDER BY CASE entity WHEN 'observation' THEN 0 WHEN 'session' THEN 1 ELSE 2 END, deleted_at ASC, entity_key ASC
                     """, r => (Entity: r.GetString(0), Key: r.GetString(1), Session: r.GetString(2), Project: r.GetString(3),
                         DeletedAt: r.GetString(4), Hard: r.GetBoolean(5)), p))
        {
            if (tombstone.Entity == "observation")
            {
                tx.Journal(new ObservationPayload
                {
                    SyncId = tombstone.Key,
                    SessionId = tombstone.Session,
                    Project = EngramTransaction.NullIfEmpty(tombstone.Project),
                    Deleted = true,
                    DeletedAt = tombstone.DeletedAt,
                    HardDelete = tombstone.Hard,
                }, "delete");
            }
            else
            {
                tx.Journal(new SessionPayload
                {
                    Id = tombstone.Key,
                    Project = tombstone.Project,
                    Deleted = true,
                    DeletedAt = tombstone.DeletedAt,
                    HardDelete = tombstone.Hard,
                }, "delete");
            }
        }
        foreach (var relation in tx.Rows($"""
                     SELECT r.sync_id, r.source_id, r.target_id, r.relation, r.reason, r.evidence, r.confidence, r.judgment_status,
                         r.marked_by_actor, r.marked_by_kind, r.marked_by_model, r.session_id, r.created_at, r.updated_at,
                         coalesce(nullif(src.project, ''), src_s.project, '')
                     FROM memory_relations r
                     JOIN observations src ON src.sync_id = r.source_id AND src.deleted_at IS NULL
                     JOIN observations tgt ON tgt.sync_id = r.target_id AND tgt.deleted_at IS NULL
                     LEFT JOIN sessions src_s ON src_s.id = src.session_id
                     WHERE r.judgment_status NOT IN ('orphaned', 'pending')
                       AND ifnull(r.marked_by_actor, '') != '' AND ifnull(r.marked_by_kind, '') != ''
                       AND coalesce(nullif(src.project, ''), src_s.project, '') = $project
                       AND {Missing("relation", "r.sync_id")}
                     ORDER BY r.created_at ASC, r.sync_id ASC
                     """, r => ReadRelation(r, r.GetString(14)), p))
        {
            tx.Journal(relation);
        }
    }

    /// <summary>A session row (id, project, mode, directory, started_at, ended_at, summary) as upstream re-reads it for its upsert.</summary>
    public static SessionPayload ReadSession(SqliteDataReader r) => new()
    {
        Id = r.GetString(0),
        Project = r.GetString(1),
        OwnershipMode = r.GetString(2),
        Directory = r.GetString(3),
        StartedAt = r.GetString(4),
        EndedAt = Text(r, 5),
        Summary = Text(r, 6),
    };

    /// <summary>An observation row from column <paramref name="at"/> on: sync_id … updated_at, as upstream's full upsert payload.</summary>
    public static ObservationPayload ReadObservation(SqliteDataReader r, int at) => new()
    {
        SyncId = r.GetString(at),
        SessionId = r.GetString(at + 1),
        Type = r.GetString(at + 2),
        Title = r.GetString(at + 3),
        Content = r.GetString(at + 4),
        ToolName = Text(r, at + 5),
        Project = Text(r, at + 6),
        Scope = r.GetString(at + 7),
        TopicKey = Text(r, at + 8),
        RevisionCount = r.GetInt64(at + 9),
        DuplicateCount = r.GetInt64(at + 10),
        LastSeenAt = Text(r, at + 11),
        CreatedAt = r.GetString(at + 12),
        UpdatedAt = r.GetString(at + 13),
    };

    /// <summary>A memory_relations row (sync_id … updated_at) with the source observation's project.</summary>
    public static RelationPayload ReadRelation(SqliteDataReader r, string project) => new()
    {
        SyncId = r.GetString(0),
        SourceId = r.GetString(1),
        TargetId = r.GetString(2),
        Relation = r.GetString(3),
        Reason = Text(r, 4),
        Evidence = Text(r, 5),
        Confidence = r.IsDBNull(6) ? null : r.GetDouble(6),
        JudgmentStatus = r.GetString(7),
        MarkedByActor = Text(r, 8),
        MarkedByKind = Text(r, 9),
        MarkedByModel = Text(r, 10),
        SessionId = Text(r, 11),
        Project = project,
        CreatedAt = r.GetString(12),
        UpdatedAt = r.GetString(13),
    };

    private static string? Text(SqliteDataReader r, int ordinal) => r.IsDBNull(ordinal) ? null : r.GetString(ordinal);

    /// <summary>A row belongs to the project by its own project, or by its session's when its own is blank.</summary>
    private static string OfProject(string alias) =>
        $"(ifnull({alias}.project, '') = $project OR (ifnull({alias}.project, '') = '' AND ifnull(s.project, '') = $project))";

    private static string Missing(string entity, string key, string? op = null) =>
        string.Format(System.Globalization.CultureInfo.InvariantCulture, NotJournaled, entity, key, op is null ? "" : $"AND sm.op = '{op}'");
}
