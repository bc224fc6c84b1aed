namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>A pulled relation upsert, by upstream's rules: it waits until both endpoint observations are here.</summary>
internal sealed class RelationApply(Statements sql)
{
    public ApplyResult Apply(PulledMutation mutation)
    {
        if (!PayloadJson.TryRead<RelationPayload>(mutation.Payload, out var payload, out var error))
        {
            return ApplyResult.Kill(ReasonCodes.Undecodable, error);
        }
        var relation = Trimmed(payload);
        string[] missing = [.. Required(relation).Where(field => EngramRules.IsBlank(field.Value)).Select(field => field.Name)];
        if (missing.Length > 0)
        {
            return ApplyResult.Kill(ReasonCodes.RelationInvalid, $"relation payload lacks {string.Join(", ", missing)}");
        }
        if (mutation.EntityKey.Trim() != relation.SyncId)
        {
            return ApplyResult.Kill(ReasonCodes.RelationInvalid, $"relation payload sync_id '{relation.SyncId}' does not match entity key '{mutation.EntityKey}'");
        }
        // An end hard-deleted here may still come back (another device's later upsert of it): the relation waits for it.
        if (MissingEndpoint(mutation, relation) is { } reason)
        {
            // Upstream's marker that the mutation's own project scopes the endpoints when the row is replayed.
            return ApplyResult.Defer(EngramRules.IsBlank(mutation.Project) ? "" : ReasonCodes.RelationOuterProject, reason);
        }
        sql.Execute("""
            INSERT INTO memory_relations (sync_id, source_id, target_id, relation, reason, evidence, confidence, judgment_status,
                marked_by_actor, marked_by_kind, marked_by_model, session_id, created_at, updated_at)
            VALUES ($sync_id, $source_id, $target_id, $relation, $reason, $evidence, $confidence, $judgment_status,
                $marked_by_actor, $marked_by_kind, $marked_by_model, $session_id, $created_at, $updated_at)
            ON CONFLICT (sync_id) DO UPDATE SET
                source_id = excluded.source_id, target_id = excluded.target_id, relation = excluded.relation,
                reason = excluded.reason, evidence = excluded.evidence, confidence = excluded.confidence,
                judgment_status = excluded.judgment_status, marked_by_actor = excluded.marked_by_actor,
                marked_by_kind = excluded.marked_by_kind, marked_by_model = excluded.marked_by_model,
                session_id = excluded.session_id, updated_at = excluded.updated_at
            """,
            ("$sync_id", relation.SyncId), ("$source_id", relation.SourceId), ("$target_id", relation.TargetId),
            ("$relation", relation.Relation), ("$reason", relation.Reason), ("$evidence", relation.Evidence),
            ("$confidence", relation.Confidence), ("$judgment_status", relation.JudgmentStatus),
            ("$marked_by_actor", relation.MarkedByActor), ("$marked_by_kind", relation.MarkedByKind),
            ("$marked_by_model", relation.MarkedByModel), ("$session_id", relation.SessionId),
            ("$created_at", relation.CreatedAt ?? ""), ("$updated_at", relation.UpdatedAt ?? ""));
        return ApplyResult.Success;
    }

    /// <summary>
    /// Upstream's endpoint check: both observations by sync_id, in any state, in the mutation's project (else the
    /// payload's), where an observation without a project takes its session's.
    /// </summary>
    private string? MissingEndpoint(PulledMutation mutation, RelationPayload relation)
    {
        var outer = EngramRules.NormalizeProject(mutation.Project);
        var project = outer.Length > 0 ? outer : EngramRules.NormalizeProject(relation.Project);
        var required = relation.SourceId == relation.TargetId ? 1 : 2;
        (string, object?)[] values = [("$source_id", relation.SourceId), ("$target_id", relation.TargetId), ("$project", project)];
        var inProject = (long)sql.Scalar("""
            SELECT count(DISTINCT o.sync_id) FROM observations o LEFT JOIN sessions s ON s.id = o.session_id
            WHERE o.sync_id IN ($source_id, $target_id)
                AND ($project = '' OR coalesce(nullif(o.project, ''), s.project, '') = $project)
            """, values)!;
        if (inProject >= required)
        {
            return null;
        }
        var anywhere = (long)sql.Scalar("SELECT count(DISTINCT sync_id) FROM observations WHERE sync_id IN ($source_id, $target_id)", values)!;
        return anywhere < required
            ? $"an endpoint of relation {relation.SyncId} is not here yet"
            : $"an endpoint of relation {relation.SyncId} belongs to another project than {project}";
    }

    private static RelationPayload Trimmed(RelationPayload payload) => payload with
    {
        SyncId = payload.SyncId?.Trim(),
        SourceId = payload.SourceId?.Trim(),
        TargetId = payload.TargetId?.Trim(),
        Relation = payload.Relation?.Trim(),
        JudgmentStatus = payload.JudgmentStatus?.Trim(),
        MarkedByActor = payload.MarkedByActor?.Trim(),
        MarkedByKind = payload.MarkedByKind?.Trim(),
    };

    private static IEnumerable<(string Name, string? Value)> Required(RelationPayload relation) =>
    [
        ("sync_id", relation.SyncId), ("source_id", relation.SourceId), ("target_id", relation.TargetId),
        ("relation", relation.Relation), ("judgment_status", relation.JudgmentStatus),
    ];
}
