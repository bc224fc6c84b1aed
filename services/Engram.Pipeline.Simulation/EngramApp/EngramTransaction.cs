using System.Globalization;
using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>
/// One of upstream Engram's write transactions (<c>BEGIN IMMEDIATE</c>): the statements of an operation and the
/// journaling every memory write does in the same transaction (upstream's enqueueSyncMutationWithSourceTx), with the
/// seqs it journaled. Statements are prepared once per connection and reused (<paramref name="statements"/>): each
/// write touching observations would otherwise compile upstream's FTS triggers again.
/// </summary>
internal sealed class EngramTransaction(SqliteTransaction transaction, string now, Dictionary<string, SqliteCommand> statements)
{
    private const string Cloud = "cloud";
    private const string Local = "local";

    private readonly List<long> _seqs = [];

    /// <summary>Upstream's Now() for this operation: Go UTC with nine fraction digits.</summary>
    public string Now { get; } = now;

    public IReadOnlyList<long> Seqs => _seqs;

    public int Execute(string sql, params (string Name, object? Value)[] parameters) => Statement(sql, parameters).ExecuteNonQuery();

    public T? Scalar<T>(string sql, params (string Name, object? Value)[] parameters)
    {
        var value = Statement(sql, parameters).ExecuteScalar();
        return value is null or DBNull
            ? default
            : (T)Convert.ChangeType(value, Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T), CultureInfo.InvariantCulture);
    }

    /// <summary>Reads every row first, as upstream's backfill does, so no cursor is open while the journal is written.</summary>
    public List<T> Rows<T>(string sql, Func<SqliteDataReader, T> read, params (string Name, object? Value)[] parameters)
    {
        using var reader = Statement(sql, parameters).ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
        {
            rows.Add(read(reader));
        }
        return rows;
    }

    public T? Row<T>(string sql, Func<SqliteDataReader, T> read, params (string Name, object? Value)[] parameters) where T : class =>
        Rows(sql, read, parameters).FirstOrDefault();

    public bool Enrolled(string project) =>
        Scalar<long>("SELECT EXISTS(SELECT 1 FROM sync_enrolled_projects WHERE project = $project)", ("$project", project)) == 1;

    public string SessionProject(string sessionId) =>
        EngramRules.Project(Scalar<string>("SELECT ifnull(project, '') FROM sessions WHERE id = $id", ("$id", sessionId)));

    public void Journal(SessionPayload payload, string op)
    {
        // A local session upsert without a directory is never journaled (upstream returns before anything else).
        if (op == "upsert" && string.IsNullOrWhiteSpace(payload.Directory))
        {
            return;
        }
        Journal("session", payload.Id, op, payload.ToJson(), payload.Project, sessionId: null);
    }

    public void Journal(ObservationPayload payload, string op) =>
        Journal("observation", payload.SyncId, op, payload.ToJson(), payload.Project, payload.SessionId);

    public void Journal(PromptPayload payload, string op) =>
        Journal("prompt", payload.SyncId, op, payload.ToJson(), payload.Project, payload.SessionId);

    public void Journal(RelationPayload payload) =>
        Journal("relation", payload.SyncId, "upsert", payload.ToJson(), payload.Project, payload.SessionId);

    private void Journal(string entity, string key, string op, string json, string? payloadProject, string? sessionId)
    {
        if (op == "upsert" && entity is "session" or "observation")
        {
            // Before the enrollment gate: a local upsert revives a hard-deleted key even in an unenrolled project.
            Execute("UPDATE sync_delete_tombstones SET active = 0 WHERE entity = $entity AND entity_key = $key",
                ("$entity", entity), ("$key", key));
        }
        var project = EngramRules.Project(payloadProject);
        if (project.Length == 0 && !string.IsNullOrWhiteSpace(sessionId))
        {
            project = SessionProject(sessionId.Trim());
        }
        if (project.Length > 0 && !Enrolled(project))
        {
            return;
        }
        if (entity == "session" && op == "upsert")
        {
            // A newer local upsert of a session replaces its unsent one: journal rows vanish and seqs have gaps.
            Execute("""
                DELETE FROM sync_mutations
                WHERE target_key = 'cloud' AND entity = 'session' AND entity_key = $key AND op = 'upsert' AND source = 'local'
                  AND project = $project AND acked_at IS NULL AND disposition = 'pending'
                """, ("$key", key), ("$project", project));
        }
        EnsureSyncState(Cloud);
        var seq = Scalar<long>("""
            INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, project)
            VALUES ('cloud', $entity, $key, $op, $payload, $source, $project)
            RETURNING seq
            """, ("$entity", entity), ("$key", key), ("$op", op), ("$payload", json), ("$source", Local), ("$project", project));
        MarkEnqueued(Cloud, seq);
        if (project.Length > 0)
        {
            var projectTarget = $"{Cloud}:{project}";
            EnsureSyncState(projectTarget);
            MarkEnqueued(projectTarget, seq);
        }
        _seqs.Add(seq);
    }

    /// <summary>
    /// A local delete in an unenrolled project journals nothing; instead the pending local upserts of the entity are
    /// superseded, and the lifecycles re-derived if any were (upstream's supersedeDeletedEntityMutationTx).
    /// </summary>
    public void SupersedePendingUpserts(string entity, string key, string project)
    {
        var evidence = new GoJsonObject()
            .String("entity", entity).String("entity_key", key).String("project", project).String("trigger", "local_delete").Build();
        var changed = Execute("""
            UPDATE sync_mutations
            SET disposition = 'superseded', disposition_reason = 'local_entity_deleted', disposition_evidence = $evidence,
                disposition_at = datetime('now')
            WHERE target_key = 'cloud' AND entity = $entity AND entity_key = $key AND project = $project
              AND op = 'upsert' AND source = 'local' AND acked_at IS NULL AND disposition = 'pending'
            """, ("$evidence", evidence), ("$entity", entity), ("$key", key), ("$project", project));
        if (changed == 0)
        {
            return;
        }
        RefreshLifecycle(Cloud, Scalar<long>(
            "SELECT COUNT(*) FROM sync_mutations WHERE target_key = 'cloud' AND acked_at IS NULL AND disposition = 'pending'"));
        if (project.Length > 0)
        {
            RefreshLifecycle($"{Cloud}:{project}", Scalar<long>("""
                SELECT COUNT(*) FROM sync_mutations
                WHERE target_key = 'cloud' AND project = $project AND acked_at IS NULL AND disposition = 'pending'
                """, ("$project", project)));
        }
    }

    /// <summary>
    /// Records that a session or observation was hard-deleted here (upstream's recordSyncDeleteTombstoneTx). The floor
    /// is the previous delete's seq, taken before the new delete is journaled; a remote floor is reset.
    /// </summary>
    public void RecordDeleteTombstone(string entity, string key, string sessionId, string project)
    {
        var floor = Math.Max(
            Scalar<long>("SELECT COALESCE(last_mutation_seq, 0) FROM sync_delete_tombstones WHERE entity = $entity AND entity_key = $key",
                ("$entity", entity), ("$key", key)),
            Scalar<long>("SELECT COALESCE(MAX(seq), 0) FROM sync_mutations WHERE entity = $entity AND entity_key = $key AND op = 'delete'",
                ("$entity", entity), ("$key", key)));
        Execute("""
            INSERT INTO sync_delete_tombstones (entity, entity_key, session_id, project, deleted_at, hard_delete, active, last_mutation_seq)
            VALUES ($entity, $key, $session, $project, $deletedAt, 1, 1, $floor)
            ON CONFLICT(entity, entity_key) DO UPDATE SET
                session_id = excluded.session_id, project = excluded.project, deleted_at = excluded.deleted_at,
                hard_delete = excluded.hard_delete, active = 1,
                last_mutation_seq = MAX(sync_delete_tombstones.last_mutation_seq, excluded.last_mutation_seq),
                last_remote_mutation_seq = NULL
            """, ("$entity", entity), ("$key", key), ("$session", sessionId.Length == 0 ? null : sessionId),
            ("$project", EngramRules.Project(project)), ("$deletedAt", Now), ("$floor", floor));
        Execute("DELETE FROM sync_delete_tombstone_remote_floors WHERE entity = $entity AND entity_key = $key",
            ("$entity", entity), ("$key", key));
    }

    /// <summary>Records a deleted prompt (upstream's recordPromptTombstoneTx); a tombstone of another identity is an error.</summary>
    public void RecordPromptTombstone(string syncId, string sessionId, string? project)
    {
        var normalized = project is null ? null : NullIfEmpty(EngramRules.Project(project));
        var existing = Row("""
            SELECT ifnull(session_id, ''), ifnull(source_inbox_id, ''), ifnull(project, '') FROM prompt_tombstones WHERE sync_id = $id
            """, r => new[] { r.GetString(0), r.GetString(1), r.GetString(2) }, ("$id", syncId));
        if (existing is not null
            && ((sessionId.Length > 0 && existing[0].Length > 0 && sessionId != existing[0])
                || (normalized is not null && existing[2].Length > 0 && normalized != existing[2])))
        {
            throw new InvalidOperationException($"Prompt tombstone {syncId} conflicts with its established identity.");
        }
        Execute("""
            INSERT INTO prompt_tombstones (sync_id, session_id, project, source_inbox_id, deleted_at)
            VALUES ($id, $session, $project, NULL, $deletedAt)
            ON CONFLICT(sync_id) DO UPDATE SET session_id = COALESCE(NULLIF(excluded.session_id, ''), prompt_tombstones.session_id),
                project = COALESCE(excluded.project, prompt_tombstones.project),
                source_inbox_id = COALESCE(excluded.source_inbox_id, prompt_tombstones.source_inbox_id),
                deleted_at = excluded.deleted_at
            """, ("$id", syncId), ("$session", sessionId), ("$project", normalized), ("$deletedAt", Now));
    }

    public static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;

    private SqliteCommand Statement(string sql, (string Name, object? Value)[] parameters)
    {
        if (!statements.TryGetValue(sql, out var command))
        {
            command = transaction.Connection!.CreateCommand();
            command.CommandText = sql;
            statements[sql] = command;
        }
        command.Transaction = transaction;
        return command.Bind(parameters);
    }

    private void EnsureSyncState(string targetKey) =>
        Execute("INSERT OR IGNORE INTO sync_state (target_key, lifecycle, updated_at) VALUES ($target, 'idle', datetime('now'))",
            ("$target", targetKey));

    private void MarkEnqueued(string targetKey, long seq) =>
        Execute("UPDATE sync_state SET lifecycle = 'pending', last_enqueued_seq = $seq, updated_at = datetime('now') WHERE target_key = $target",
            ("$seq", seq), ("$target", targetKey));

    /// <summary>pending while unsent rows remain, else healthy; an actively degraded target stays degraded.</summary>
    private void RefreshLifecycle(string targetKey, long pending)
    {
        if (targetKey == "cloud:inbox")
        {
            return;
        }
        EnsureSyncState(targetKey);
        var state = Rows("SELECT lifecycle, ifnull(reason_code, ''), backoff_until FROM sync_state WHERE target_key = $target",
            r => (Lifecycle: r.GetString(0), Reason: r.GetString(1), BackoffUntil: r.IsDBNull(2) ? null : r.GetString(2)),
            ("$target", targetKey))[0];
        var next = ActivelyDegraded(state.Lifecycle, state.Reason, state.BackoffUntil) ? "degraded" : pending > 0 ? "pending" : "healthy";
        if (next != state.Lifecycle)
        {
            Execute("UPDATE sync_state SET lifecycle = $lifecycle, updated_at = datetime('now') WHERE target_key = $target",
                ("$lifecycle", next), ("$target", targetKey));
        }
    }

    private bool ActivelyDegraded(string lifecycle, string reasonCode, string? backoffUntil) =>
        lifecycle == "degraded"
        && (reasonCode.Trim() is "blocked_unenrolled" or "paused" or "auth_required" or "policy_forbidden" or "cloud_config_error"
            || (DateTimeOffset.TryParseExact(backoffUntil?.Trim(), ["yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK"],
                    CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal, out var until)
                && until > EngramTime.Parse(Now)));
}
