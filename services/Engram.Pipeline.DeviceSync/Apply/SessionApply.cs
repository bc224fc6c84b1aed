using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>A pulled session upsert or delete, by upstream's rules.</summary>
internal sealed class SessionApply(Statements sql, TimeProvider clock)
{
    private readonly Tombstones _tombstones = new(sql);

    public ApplyResult Apply(PulledMutation mutation)
    {
        if (!PayloadJson.TryRead<SessionPayload>(mutation.Payload, out var payload, out var error))
        {
            return ApplyResult.Kill(ReasonCodes.Undecodable, error);
        }
        var id = EngramRules.IsBlank(payload.Id) ? mutation.EntityKey : payload.Id;
        if (EngramRules.IsBlank(id) || EngramRules.IsBlank(mutation.EntityKey) || id != mutation.EntityKey)
        {
            return ApplyResult.Kill(ReasonCodes.SessionIdentity, $"session payload id '{payload.Id}' does not match entity key '{mutation.EntityKey}'");
        }
        return mutation.Op == EngramRules.Delete || payload.IsDelete ? Delete(mutation, id, payload) : Upsert(mutation, id, payload);
    }

    private ApplyResult Upsert(PulledMutation mutation, string id, SessionPayload payload)
    {
        if (_tombstones.BlocksUpsert(EngramRules.TargetKey(mutation.Project), EngramRules.Session, id, mutation.CloudSeq))
        {
            return ApplyResult.Skip($"a delete of session {id} is placed at or after cloud seq {mutation.CloudSeq}");
        }
        if (!PayloadJson.SessionDirectoryAdmissible(mutation.Payload))
        {
            return ApplyResult.Kill(ReasonCodes.Directory, $"session {id} carries no directory string and is not project-owned");
        }
        var mode = payload.OwnershipMode ?? "";
        if (!EngramRules.IsBlank(mode) && mode is not ("shared" or "project_owned"))
        {
            return ApplyResult.Kill(ReasonCodes.OwnershipMode, $"session {id} has ownership mode '{mode}'");
        }
        // Upstream's merge, except where it would let devices end differently (DESIGN rule 7: the last mutation in cloud
        // order wins). Upstream keeps a stored non-blank directory and takes ended_at and summary only when the payload
        // has them; but a device's own later upsert, which rule 7 keeps, was written without the merged values, so
        // devices would disagree. Here a non-blank directory and started_at replace the stored ones, and ended_at and
        // summary are the payload's (Engram journals a session from its whole row). A blank started_at keeps the stored
        // one (upstream would stamp the current time); a project-owned session keeps its project and mode, as upstream.
        sql.Execute("""
            INSERT INTO sessions (id, project, ownership_mode, directory, started_at, ended_at, summary)
            VALUES ($id, $project, COALESCE($mode, 'shared'), $directory, COALESCE(NULLIF($started_at, ''), $now), $ended_at, $summary)
            ON CONFLICT (id) DO UPDATE SET
                project = CASE WHEN sessions.ownership_mode = 'project_owned' THEN sessions.project ELSE excluded.project END,
                ownership_mode = CASE WHEN sessions.ownership_mode = 'project_owned' THEN sessions.ownership_mode ELSE excluded.ownership_mode END,
                directory = CASE WHEN trim(excluded.directory, $whitespace) = '' THEN sessions.directory ELSE excluded.directory END,
                started_at = CASE WHEN $started_at = '' THEN sessions.started_at ELSE excluded.started_at END,
                ended_at = excluded.ended_at,
                summary = excluded.summary
            """,
            ("$id", id), ("$project", payload.Project ?? ""), ("$mode", EngramRules.IsBlank(mode) ? null : mode),
            ("$directory", payload.Directory ?? ""), ("$started_at", (payload.StartedAt ?? "").Trim()),
            ("$now", EngramTime.Go(clock.GetUtcNow())), ("$ended_at", payload.EndedAt), ("$summary", payload.Summary),
            ("$whitespace", EngramRules.WhitespaceTrimSet));
        _tombstones.ClearForUpsert(EngramRules.Session, id);
        return ApplyResult.Success;
    }

    private ApplyResult Delete(PulledMutation mutation, string id, SessionPayload payload)
    {
        // The foreign key would refuse it; checked first so the reason is plain.
        if (sql.Exists("SELECT EXISTS (SELECT 1 FROM observations WHERE session_id = $id)", ("$id", id)))
        {
            return ApplyResult.Kill(ReasonCodes.SessionInUse, $"observations still belong to session {id}");
        }
        sql.Execute("DELETE FROM user_prompts WHERE session_id = $id", ("$id", id));
        sql.Execute("DELETE FROM sessions WHERE id = $id", ("$id", id));
        var deletedAt = EngramRules.IsBlank(payload.DeletedAt) ? EngramTime.Go(clock.GetUtcNow()) : payload.DeletedAt;
        _tombstones.RecordPulledDelete(EngramRules.TargetKey(mutation.Project), EngramRules.Session, id, sessionId: null, payload.Project,
            deletedAt, payload.HardDelete == true, mutation.CloudSeq);
        return ApplyResult.Success;
    }
}
