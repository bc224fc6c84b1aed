namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>
/// A pulled relation upsert, by upstream's rules: it waits until both endpoint observations are here. And the
/// relations a hard delete of an observation orphans, so that every device orphans the same ones: those whose last
/// mutation the cloud placed before the delete, wherever and whenever each device learns of them.
/// </summary>
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
        // Placed before a hard delete of an end (known here by its tombstone's floor, or still to be placed when the
        // delete is this device's own unsent one), it is orphaned, as the devices that had it when the delete came.
        sql.Execute("""
            UPDATE memory_relations SET judgment_status = 'orphaned'
            WHERE sync_id = $sync_id AND EXISTS (
                SELECT 1 FROM sync_delete_tombstones t
                LEFT JOIN sync_delete_tombstone_remote_floors f
                    ON f.target_key = $target AND f.entity = t.entity AND f.entity_key = t.entity_key
                WHERE t.entity = 'observation' AND t.entity_key IN ($source_id, $target_id) AND t.hard_delete = 1
                  AND (f.last_mutation_seq > $seq OR (f.last_mutation_seq IS NULL AND t.active = 1)))
            """, ("$sync_id", relation.SyncId), ("$target", EngramRules.TargetKey(mutation.Project)), ("$source_id", relation.SourceId),
            ("$target_id", relation.TargetId), ("$seq", mutation.CloudSeq));
        return ApplyResult.Success;
    }

    /// <summary>
    /// Orphans the relations touching observation <paramref name="syncId"/>, which a hard delete placed at
    /// <paramref name="cloudSeq"/> removes, as Engram's own hard delete does; but not one this device edited itself
    /// after it or has not had placed yet (rule 7). Also when this device keeps the observation (its own later edit
    /// wins): the relations placed before the delete are orphaned on every device alike.
    /// </summary>
    public void OrphanTouching(string project, string syncId, long cloudSeq) =>
        sql.Execute("""
            UPDATE memory_relations SET judgment_status = 'orphaned', updated_at = datetime('now')
            WHERE (source_id = $sync_id OR target_id = $sync_id) AND judgment_status <> 'orphaned'
              AND NOT EXISTS (
                SELECT 1 FROM sync_mutations m
                LEFT JOIN sync_seq_mapping s ON s.target_key = $target AND s.local_seq = m.seq
                WHERE m.seq = (SELECT MAX(seq) FROM sync_mutations INDEXED BY idx_sync_mutations_lookup
                               WHERE target_key = 'cloud' AND entity = 'relation' AND entity_key = memory_relations.sync_id
                                 AND disposition = 'pending')
                  AND (m.acked_at IS NULL OR s.cloud_seq > $seq))
            """, ("$sync_id", syncId), ("$target", EngramRules.TargetKey(project)), ("$seq", cloudSeq));

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
