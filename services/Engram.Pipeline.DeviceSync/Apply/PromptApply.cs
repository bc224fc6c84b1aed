using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>A pulled prompt upsert or delete, by upstream's rules: prompts keep their own tombstones, with no seq floor.</summary>
internal sealed class PromptApply(Statements sql, TimeProvider clock)
{
    public ApplyResult Apply(PulledMutation mutation)
    {
        if (!PayloadJson.TryRead<PromptPayload>(mutation.Payload, out var payload, out var error))
        {
            return ApplyResult.Kill(ReasonCodes.Undecodable, error);
        }
        // Upstream checks no identity for prompts; the pipeline holds them to the rule of the other entities.
        if (mutation.SyncId(payload.SyncId) is not { } key)
        {
            return ApplyResult.Kill(ReasonCodes.PromptIdentity, $"prompt payload sync_id '{payload.SyncId}' does not match entity key '{mutation.EntityKey}'");
        }
        return mutation.Op == EngramRules.Delete || payload.Deleted == true || payload.HardDelete == true
            ? Delete(key, payload)
            : Upsert(key, payload);
    }

    private ApplyResult Upsert(string syncId, PromptPayload payload)
    {
        var sessionId = payload.SessionId ?? "";
        var inboxId = payload.SourceInboxId ?? "";
        var tombstone = ReadTombstone(syncId);
        if (tombstone is { InboxId.Length: > 0 })
        {
            return ApplyResult.Skip($"prompt {syncId} was deleted together with its inbox entry");
        }
        if (tombstone is not null && IsStale(payload.CreatedAt, tombstone.DeletedAt))
        {
            return ApplyResult.Skip($"prompt {syncId} was deleted at {tombstone.DeletedAt}, after it was made");
        }
        if (inboxId.Length > 0 && sql.Exists(
                "SELECT EXISTS (SELECT 1 FROM prompt_tombstones WHERE session_id = $session_id AND source_inbox_id = $inbox_id)",
                ("$session_id", sessionId), ("$inbox_id", inboxId)))
        {
            return ApplyResult.Skip($"the inbox entry {inboxId} of prompt {syncId} was deleted");
        }
        if (!sql.Exists("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $id)", ("$id", sessionId)))
        {
            return ApplyResult.Defer(ReasonCodes.ParentSessionMissing, $"session {sessionId} of prompt {syncId} is not here yet");
        }
        if (tombstone is not null)
        {
            sql.Execute("DELETE FROM prompt_tombstones WHERE sync_id = $sync_id", ("$sync_id", syncId));
        }
        if (InboxConflict(syncId, sessionId, inboxId) is { } conflict)
        {
            return ApplyResult.Kill(ReasonCodes.PromptIdentity, conflict);
        }
        (string, object?)[] values =
        [
            ("$sync_id", syncId), ("$session_id", sessionId), ("$content", payload.Content ?? ""), ("$project", payload.Project),
            ("$inbox_id", EngramRules.NullIfEmpty(inboxId)), ("$created_at", EngramRules.IsBlank(payload.CreatedAt) ? null : payload.CreatedAt),
            ("$now", EngramTime.Sqlite(clock.GetUtcNow())),
        ];
        var updated = sql.Execute("""
            UPDATE user_prompts SET session_id = $session_id, content = $content, project = $project,
                source_inbox_id = COALESCE($inbox_id, source_inbox_id), created_at = COALESCE($created_at, created_at)
            WHERE id = (SELECT MAX(id) FROM user_prompts WHERE sync_id = $sync_id)
            """, values);
        if (updated == 0)
        {
            sql.Execute("""
                INSERT INTO user_prompts (sync_id, session_id, content, project, created_at, source_inbox_id)
                VALUES ($sync_id, $session_id, $content, $project, COALESCE($created_at, $now), $inbox_id)
                """, values);
        }
        return ApplyResult.Success;
    }

    private ApplyResult Delete(string syncId, PromptPayload payload)
    {
        var sessionId = payload.SessionId ?? "";
        var inboxId = payload.SourceInboxId ?? "";
        if (inboxId.Length > 0 && !EngramRules.IsBlank(sessionId) && InboxOwner(sessionId, inboxId) is { } owner && owner != syncId)
        {
            return ApplyResult.Kill(ReasonCodes.PromptIdentity, $"prompt delete {syncId} names inbox entry {inboxId}, which prompt {owner} holds");
        }
        var project = payload.Project;
        using (var reader = sql.Read(
            "SELECT session_id, ifnull(source_inbox_id, ''), ifnull(project, '') FROM user_prompts WHERE sync_id = $sync_id ORDER BY id DESC LIMIT 1",
            ("$sync_id", syncId)))
        {
            if (reader.Read())
            {
                sessionId = reader.GetString(0);
                inboxId = reader.GetString(1);
                project = EngramRules.IsBlank(project) ? reader.GetString(2) : project;
            }
        }
        if (inboxId.Length > 0 && EngramRules.IsBlank(sessionId))
        {
            return ApplyResult.Kill(ReasonCodes.PromptIdentity, $"prompt delete {syncId} names inbox entry {inboxId} but no session");
        }
        if (EngramRules.IsBlank(project))
        {
            project = EngramRules.NullIfEmpty(OwnerProject(syncId, sessionId));
        }
        sql.Execute("DELETE FROM user_prompts WHERE sync_id = $sync_id", ("$sync_id", syncId));
        var deletedAt = EngramRules.IsBlank(payload.DeletedAt) ? EngramTime.Go(clock.GetUtcNow()) : payload.DeletedAt;
        return RecordTombstone(syncId, sessionId, project, inboxId, deletedAt);
    }

    /// <summary>Upstream's fallbacks for a delete that names no project: the prompt's tombstone, its session, the session's tombstone.</summary>
    private string OwnerProject(string syncId, string sessionId) =>
        sql.Scalar("""
            SELECT coalesce(
                (SELECT nullif(project, '') FROM prompt_tombstones WHERE sync_id = $sync_id),
                (SELECT nullif(project, '') FROM sessions WHERE id = $session_id),
                (SELECT project FROM sync_delete_tombstones WHERE entity = 'session' AND entity_key = $session_id AND active = 1),
                '')
            """, ("$sync_id", syncId), ("$session_id", sessionId)) as string ?? "";

    /// <summary>Upstream's <c>recordPromptTombstoneTx</c>: a tombstone never changes the session, inbox entry or project it names.</summary>
    private ApplyResult RecordTombstone(string syncId, string sessionId, string? project, string inboxId, string deletedAt)
    {
        if (project is not null)
        {
            project = EngramRules.NullIfEmpty(EngramRules.NormalizeProject(project));
        }
        using (var reader = sql.Read(
            "SELECT ifnull(session_id, ''), ifnull(source_inbox_id, ''), ifnull(project, '') FROM prompt_tombstones WHERE sync_id = $sync_id",
            ("$sync_id", syncId)))
        {
            if (reader.Read() && (Differs(sessionId, reader.GetString(0)) || Differs(inboxId, reader.GetString(1))
                || (project is not null && Differs(project, reader.GetString(2)))))
            {
                return ApplyResult.Kill(ReasonCodes.PromptIdentity, $"prompt tombstone {syncId} names another session, inbox entry or project");
            }
        }
        sql.Execute("""
            INSERT INTO prompt_tombstones (sync_id, session_id, project, source_inbox_id, deleted_at)
            VALUES ($sync_id, $session_id, $project, $inbox_id, $deleted_at)
            ON CONFLICT (sync_id) DO UPDATE SET
                session_id = COALESCE(NULLIF(excluded.session_id, ''), prompt_tombstones.session_id),
                project = COALESCE(excluded.project, prompt_tombstones.project),
                source_inbox_id = COALESCE(excluded.source_inbox_id, prompt_tombstones.source_inbox_id),
                deleted_at = excluded.deleted_at
            """, ("$sync_id", syncId), ("$session_id", sessionId), ("$project", project), ("$inbox_id", EngramRules.NullIfEmpty(inboxId)),
            ("$deleted_at", deletedAt));
        return ApplyResult.Success;
    }

    private sealed record Tombstone(string DeletedAt, string InboxId);

    private Tombstone? ReadTombstone(string syncId)
    {
        using var reader = sql.Read("SELECT deleted_at, ifnull(source_inbox_id, '') FROM prompt_tombstones WHERE sync_id = $sync_id",
            ("$sync_id", syncId));
        return reader.Read() ? new Tombstone(reader.GetString(0), reader.GetString(1)) : null;
    }

    /// <summary>Upstream's inbox identity: one prompt per (session, inbox entry), and a prompt keeps the pair it was made with.</summary>
    private string? InboxConflict(string syncId, string sessionId, string inboxId)
    {
        if (inboxId.Length > 0 && InboxOwner(sessionId, inboxId) is { } owner && owner != syncId)
        {
            return $"inbox entry {inboxId} of session {sessionId} belongs to prompt {owner}, not {syncId}";
        }
        using var reader = sql.Read(
            "SELECT session_id, ifnull(source_inbox_id, '') FROM user_prompts WHERE sync_id = $sync_id ORDER BY id DESC LIMIT 1",
            ("$sync_id", syncId));
        if (reader.Read() && reader.GetString(1) is { Length: > 0 } existingInbox
            && (reader.GetString(0) != sessionId || (inboxId.Length > 0 && existingInbox != inboxId)))
        {
            return $"prompt {syncId} was made for inbox entry {existingInbox} of session {reader.GetString(0)}";
        }
        return null;
    }

    private string? InboxOwner(string sessionId, string inboxId) =>
        sql.Scalar("SELECT sync_id FROM user_prompts WHERE session_id = $session_id AND source_inbox_id = $inbox_id",
            ("$session_id", sessionId), ("$inbox_id", inboxId)) as string;

    private static bool Differs(string incoming, string stored) => incoming.Length > 0 && stored.Length > 0 && incoming != stored;

    /// <summary>Upstream's <c>isStalePromptUpsert</c>: not newer than the delete, or either time unreadable.</summary>
    private static bool IsStale(string? createdAt, string deletedAt) =>
        EngramTime.Parse(createdAt) is not { } created || EngramTime.Parse(deletedAt) is not { } deleted || created <= deleted;
}
