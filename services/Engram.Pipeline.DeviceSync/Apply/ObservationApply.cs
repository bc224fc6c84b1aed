using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>A pulled observation upsert or delete, by upstream's rules; the FTS triggers keep search in step.</summary>
internal sealed class ObservationApply(Statements sql, TimeProvider clock)
{
    private readonly Tombstones _tombstones = new(sql);
    private readonly Deferral _deferral = new(sql, clock);

    public ApplyResult Apply(PulledMutation mutation)
    {
        if (!PayloadJson.TryRead<ObservationPayload>(mutation.Payload, out var payload, out var error))
        {
            return ApplyResult.Kill(ReasonCodes.Undecodable, error);
        }
        if (mutation.SyncId(payload.SyncId) is not { } key)
        {
            return ApplyResult.Kill(ReasonCodes.ObservationIdentity, $"observation payload sync_id '{payload.SyncId}' does not match entity key '{mutation.EntityKey}'");
        }
        return mutation.Op == EngramRules.Delete ? Delete(mutation, key, payload) : Upsert(mutation, key, payload);
    }

    private ApplyResult Upsert(PulledMutation mutation, string syncId, ObservationPayload payload)
    {
        if (_tombstones.BlocksUpsert(EngramRules.TargetKey(mutation.Project), EngramRules.Observation, syncId, mutation.CloudSeq))
        {
            return ApplyResult.Skip($"a delete of observation {syncId} is placed at or after cloud seq {mutation.CloudSeq}");
        }
        var sessionId = payload.SessionId ?? "";
        if (!sql.Exists("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $id)", ("$id", sessionId)))
        {
            return ApplyResult.Defer(ReasonCodes.ParentSessionMissing, $"session {sessionId} of observation {syncId} is not here yet");
        }
        var content = payload.Content ?? "";
        (string, object?)[] values =
        [
            ("$sync_id", syncId), ("$session_id", sessionId), ("$type", payload.Type ?? ""), ("$title", payload.Title ?? ""),
            ("$content", content), ("$tool_name", payload.ToolName), ("$project", payload.Project),
            ("$scope", EngramRules.NormalizeScope(payload.Scope)), ("$topic_key", payload.TopicKey),
            ("$hash", EngramRules.HashNormalized(content)), ("$revision", payload.RevisionCount ?? 0),
            ("$duplicate", payload.DuplicateCount ?? 0), ("$last_seen_at", payload.LastSeenAt),
            ("$created_at", (payload.CreatedAt ?? "").Trim()), ("$updated_at", (payload.UpdatedAt ?? "").Trim()),
            ("$now", EngramTime.Go(clock.GetUtcNow())),
        ];
        // The latest row with the sync_id, in any state, takes every field; blank counts and times keep what it has.
        var updated = sql.Execute("""
            UPDATE observations SET
                session_id = $session_id, type = $type, title = $title, content = $content, tool_name = $tool_name,
                project = CAST($project AS TEXT), scope = $scope, topic_key = $topic_key, normalized_hash = $hash,
                revision_count = CASE WHEN $revision > 0 THEN $revision ELSE MAX(revision_count, 1) END,
                duplicate_count = CASE WHEN $duplicate > 0 THEN $duplicate ELSE MAX(duplicate_count, 1) END,
                last_seen_at = COALESCE($last_seen_at, last_seen_at),
                created_at = COALESCE(NULLIF($created_at, ''), created_at),
                updated_at = COALESCE(NULLIF($updated_at, ''), updated_at),
                deleted_at = NULL
            WHERE id = (SELECT MAX(id) FROM observations WHERE sync_id = $sync_id)
            """, values);
        if (updated == 0)
        {
            sql.Execute("""
                INSERT INTO observations (sync_id, session_id, type, title, content, tool_name, project, scope, topic_key,
                    normalized_hash, revision_count, duplicate_count, last_seen_at, created_at, updated_at, deleted_at)
                VALUES ($sync_id, $session_id, $type, $title, $content, $tool_name, CAST($project AS TEXT), $scope, $topic_key,
                    $hash, MAX($revision, 1), MAX($duplicate, 1), $last_seen_at,
                    COALESCE(NULLIF($created_at, ''), $now), COALESCE(NULLIF($updated_at, ''), NULLIF($created_at, ''), $now), NULL)
                """, values);
        }
        _tombstones.ClearForUpsert(EngramRules.Observation, syncId);
        return ApplyResult.Success;
    }

    private ApplyResult Delete(PulledMutation mutation, string syncId, ObservationPayload payload)
    {
        var now = EngramTime.Go(clock.GetUtcNow());
        var deletedAt = EngramRules.IsBlank(payload.DeletedAt) ? now : payload.DeletedAt;
        var hard = payload.HardDelete == true;
        var id = sql.Scalar("SELECT MAX(id) FROM observations WHERE sync_id = $sync_id", ("$sync_id", syncId)) as long?;
        if (id is null && !hard && _deferral.HasWaitingUpsert(mutation.Project, syncId))
        {
            // Upstream would cancel the waiting upsert, and this device would end with no row where the writer keeps a
            // soft-deleted one (which relations may point at): the delete waits for the upsert, and applies after it.
            return ApplyResult.Defer(ReasonCodes.ParentSessionMissing, $"observation {syncId} waits for its session before its soft delete");
        }
        if (id is not null)
        {
            if (hard)
            {
                sql.Execute("DELETE FROM observations WHERE id = $id", ("$id", id));
                new RelationApply(sql).OrphanTouching(mutation.Project, syncId, mutation.CloudSeq);
            }
            else
            {
                var updatedAt = (payload.UpdatedAt ?? "").Trim();
                sql.Execute("UPDATE observations SET deleted_at = $deleted_at, updated_at = $updated_at WHERE id = $id",
                    ("$deleted_at", deletedAt), ("$updated_at", updatedAt.Length > 0 ? updatedAt : deletedAt), ("$id", id));
            }
        }
        if (hard)
        {
            _deferral.CancelObservationUpserts(syncId);
        }
        _tombstones.RecordPulledDelete(EngramRules.TargetKey(mutation.Project), EngramRules.Observation, syncId, payload.SessionId,
            payload.Project, deletedAt, hard, mutation.CloudSeq);
        return ApplyResult.Success;
    }
}
