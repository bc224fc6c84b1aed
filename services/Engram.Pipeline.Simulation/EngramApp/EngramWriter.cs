using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>What an operation saved and the local seqs it journaled (none when its project is not enrolled).</summary>
public sealed record EngramWrite(string SyncId, IReadOnlyList<long> Seqs);

/// <summary>Where an observation stands in the database.</summary>
public enum ObservationState
{
    Live,
    SoftDeleted,
    Gone,
}

/// <summary>
/// Engram refuses to edit or delete what it does not hold, as upstream does: another device's delete may have
/// reached this database between the user finding a memory and acting on it.
/// </summary>
public sealed class EngramNotFoundException(string message) : InvalidOperationException(message);

/// <summary>
/// The Engram application writing one Engram database, as upstream Engram's store does: its own connection with
/// Engram's settings, every operation one <c>BEGIN IMMEDIATE</c> transaction that writes the memory tables and
/// journals in <c>sync_mutations</c> (enrollment gate, session supersede, tombstones, sync_state), payloads as Go
/// marshals them. The database must exist with upstream's schema (<see cref="EngramDatabase.Attach"/> makes one).
/// Every operation returns the seqs it journaled so a caller can time them. Not thread-safe, like one Engram process.
/// </summary>
public sealed class EngramWriter : IDisposable
{
    private const string ObservationColumns = """
        id, ifnull(sync_id, ''), session_id, type, title, content, tool_name, project, scope, topic_key,
        revision_count, duplicate_count, last_seen_at, created_at, updated_at
        """;

    private static readonly Dictionary<string, int> ReviewAfterMonths = new(StringComparer.Ordinal)
    {
        ["decision"] = 6,
        ["policy"] = 12,
        ["preference"] = 3,
    };

    private static readonly HashSet<string> RelationVerbs =
        ["related", "compatible", "scoped", "conflicts_with", "supersedes", "not_conflict"];

    private readonly SqliteConnection _connection;
    private readonly Dictionary<string, SqliteCommand> _statements = new(StringComparer.Ordinal);
    private readonly Random _random;
    private readonly TimeProvider _clock;

    /// <param name="databasePath">An existing Engram database.</param>
    /// <param name="random">Source of the sync ids; a seeded one makes them repeatable.</param>
    /// <param name="clock">Source of upstream's Go Now() times; SQLite's datetime('now') stays the real clock.</param>
    public EngramWriter(string databasePath, Random? random = null, TimeProvider? clock = null)
    {
        _random = random ?? new Random();
        _clock = clock ?? TimeProvider.System;
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = databasePath,
            Mode = SqliteOpenMode.ReadWrite,
            Pooling = false,
        }.ToString());
        try
        {
            _connection.Open();
            using var settings = _connection.CreateCommand();
            // Upstream's settings, and a larger page cache than SQLite's 2 MB default: a connection setting only, it
            // keeps long simulated runs from slowing down as the file grows, and changes nothing that is written.
            settings.CommandText = """
                PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA journal_mode = WAL;
                PRAGMA cache_size = -65536;
                """;
            settings.ExecuteNonQuery();
            settings.CommandText = """
                SELECT COUNT(*) FROM sqlite_master
                WHERE type = 'table' AND name IN ('sessions', 'observations', 'sync_mutations', 'sync_enrolled_projects')
                """;
            if ((long)settings.ExecuteScalar()! != 4)
            {
                throw new InvalidOperationException($"{databasePath} has no Engram schema; create it first (EngramDatabase.Attach does).");
            }
        }
        catch
        {
            _connection.Dispose();
            throw;
        }
        Path = databasePath;
    }

    public string Path { get; }

    public void Dispose()
    {
        foreach (var statement in _statements.Values)
        {
            statement.Dispose();
        }
        _connection.Dispose();
    }

    public bool Enrolled(string project) => Read(tx => tx.Enrolled(EngramRules.Project(project)));

    /// <summary>
    /// Whether the observation is there to edit, as the user would find it: live, soft-deleted, or gone (another
    /// device may have deleted it since it was saved or revised here).
    /// </summary>
    public ObservationState Observation(string syncId) => Read(tx => tx.Scalar<long?>(
        "SELECT deleted_at IS NULL FROM observations WHERE sync_id = $syncId ORDER BY id DESC LIMIT 1", ("$syncId", syncId))) switch
    {
        1 => ObservationState.Live,
        0 => ObservationState.SoftDeleted,
        _ => ObservationState.Gone,
    };

    /// <summary>
    /// Enrolls a project for cloud sync; only a new enrollment backfills the project's current state into the
    /// journal, in this transaction: sessions, live observations, soft-deleted ones as deletes, prompts, prompt
    /// tombstones, active floorless delete tombstones, judged relations.
    /// </summary>
    public IReadOnlyList<long> EnrollProject(string project)
    {
        project = EngramRules.Project(project);
        if (project.Length == 0 || project == "inbox")
        {
            throw new ArgumentException($"Project '{project}' cannot be enrolled.", nameof(project));
        }
        return Journaled(tx =>
        {
            if (tx.Execute("INSERT OR IGNORE INTO sync_enrolled_projects (project) VALUES ($project)", ("$project", project)) == 1)
            {
                EngramBackfill.Run(tx, project);
            }
        });
    }

    /// <summary>
    /// Registers a runtime session, or renews its lease (upstream's StartSession, ownership 'shared'); journals the
    /// session upsert only when the row is new or had no project, mode or directory. Refused for an ended session.
    /// </summary>
    public IReadOnlyList<long> StartSession(string id, string project, string directory)
    {
        RequireSessionId(id);
        project = RequireProject(project);
        return Journaled(tx =>
        {
            var existing = tx.Row("SELECT ifnull(project, ''), ifnull(ownership_mode, ''), ifnull(directory, '') FROM sessions WHERE id = $id",
                r => new[] { EngramRules.Project(r.GetString(0)), r.GetString(1).Trim(), r.GetString(2) }, ("$id", id));
            if (existing is not null)
            {
                RequireWritable(id, existing[0], existing[1], project);
            }
            var started = tx.Execute("""
                INSERT INTO sessions (id, project, ownership_mode, directory, started_at, runtime_lease_expires_at, local_creation_project)
                VALUES ($id, $project, 'shared', $directory, $now, datetime('now', '+30 minutes'), $project)
                ON CONFLICT(id) DO UPDATE SET
                  project = CASE WHEN ifnull(trim(sessions.project, $ws), '') = '' THEN excluded.project ELSE sessions.project END,
                  ownership_mode = CASE WHEN ifnull(trim(sessions.ownership_mode, $ws), '') = '' THEN excluded.ownership_mode ELSE sessions.ownership_mode END,
                  directory = CASE WHEN trim(sessions.directory, $ws) = '' THEN excluded.directory ELSE sessions.directory END,
                  runtime_lease_expires_at = excluded.runtime_lease_expires_at
                WHERE sessions.ended_at IS NULL
                """, ("$id", id), ("$project", project), ("$directory", directory), ("$now", tx.Now), ("$ws", EngramRules.WhitespaceTrimSet));
            if (started == 0)
            {
                throw new InvalidOperationException($"Session {id} has already ended.");
            }
            if (existing is null || existing[0].Length == 0 || existing[1].Length == 0 || existing[2].Trim().Length == 0)
            {
                tx.Journal(ReadSession(tx, id), "upsert");
            }
        });
    }

    /// <summary>
    /// Creates a session with an explicit ownership mode, or fills a blank project, mode or directory of an existing
    /// one, and always journals its upsert (upstream's CreateSessionWithOwnershipMode: <c>engram save</c> creates
    /// <c>manual-save-&lt;project&gt;</c> this way, project_owned, with the working directory).
    /// </summary>
    public IReadOnlyList<long> CreateSession(string id, string project, string directory, string ownershipMode = "shared")
    {
        RequireSessionId(id);
        project = RequireProject(project);
        if (ownershipMode is not ("shared" or "project_owned"))
        {
            throw new ArgumentException($"Invalid session ownership mode '{ownershipMode}'.", nameof(ownershipMode));
        }
        return Journaled(tx =>
        {
            var existing = tx.Row("SELECT ifnull(project, ''), ifnull(ownership_mode, '') FROM sessions WHERE id = $id",
                r => new[] { EngramRules.Project(r.GetString(0)), r.GetString(1).Trim() }, ("$id", id));
            if (existing is not null)
            {
                if (ownershipMode == "project_owned" && existing[0].Length > 0 && existing[0] != project)
                {
                    throw new InvalidOperationException($"Session {id} belongs to {existing[0]}, not {project}.");
                }
                RequireWritable(id, existing[0], existing[1], project);
            }
            tx.Execute("""
                INSERT INTO sessions (id, project, ownership_mode, directory, started_at, local_creation_project)
                VALUES ($id, $project, $mode, $directory, $now, $project)
                ON CONFLICT(id) DO UPDATE SET
                  project = CASE WHEN ifnull(trim(sessions.project, $ws), '') = '' THEN excluded.project ELSE sessions.project END,
                  ownership_mode = CASE WHEN ifnull(trim(sessions.ownership_mode, $ws), '') = '' THEN excluded.ownership_mode ELSE sessions.ownership_mode END,
                  directory = CASE WHEN trim(sessions.directory, $ws) = '' THEN excluded.directory ELSE sessions.directory END
                """, ("$id", id), ("$project", project), ("$mode", ownershipMode), ("$directory", directory), ("$now", tx.Now),
                ("$ws", EngramRules.WhitespaceTrimSet));
            tx.Journal(ReadSession(tx, id), "upsert");
        });
    }

    /// <summary>
    /// Ends a session (ended_at = datetime('now'), summary) and journals its upsert again, which deletes the pending
    /// unsent one: the session's upsert usually lands after its observations and prompts.
    /// </summary>
    public IReadOnlyList<long> EndSession(string id, string? summary)
    {
        RequireSessionId(id);
        return Journaled(tx =>
        {
            if (tx.Execute("UPDATE sessions SET ended_at = datetime('now'), summary = $summary WHERE id = $id",
                    ("$summary", string.IsNullOrEmpty(summary) ? null : summary), ("$id", id)) > 0)
            {
                tx.Journal(ReadSession(tx, id), "upsert");
            }
        });
    }

    /// <summary>
    /// Saves an observation as upstream's AddObservation does: a live observation with the same topic_key, project
    /// and scope is revised in place (revision_count + 1, a version kept); the same content, type and title within
    /// 15 minutes bumps duplicate_count; otherwise a new row with a new <c>obs-</c> sync id. Content over 50,000 bytes
    /// is cut on a character boundary and marked. Returns the sync id of the row written.
    /// </summary>
    public EngramWrite AddObservation(string sessionId, string type, string title, string content, string project = "",
        string scope = "project", string? topicKey = null, string? toolName = null)
    {
        title = EngramRules.StripPrivateTags(title);
        content = EngramRules.StoredContent(content);
        if (title.Length == 0 || content.Length == 0)
        {
            throw new ArgumentException("An observation needs a title and content.");
        }
        scope = EngramRules.Scope(scope);
        topicKey = EngramRules.TopicKey(topicKey);
        var hash = EngramRules.NormalizedHash(content);
        var syncId = "";
        var seqs = Journaled(tx =>
        {
            var owner = ResolveWriteProject(tx, sessionId, EngramRules.Project(project));
            long id;
            if (topicKey.Length > 0 && tx.Scalar<long?>("""
                    SELECT id FROM observations
                    WHERE topic_key = $topic AND ifnull(project, '') = ifnull($project, '') AND scope = $scope AND deleted_at IS NULL
                    ORDER BY datetime(updated_at) DESC, datetime(created_at) DESC LIMIT 1
                    """, ("$topic", topicKey), ("$project", EngramTransaction.NullIfEmpty(owner)), ("$scope", scope)) is { } revised)
            {
                KeepVersion(tx, revised);
                tx.Execute("""
                    UPDATE observations
                    SET session_id = $session, type = $type, title = $title, content = $content, tool_name = $tool, topic_key = $topic,
                        normalized_hash = $hash, revision_count = revision_count + 1, last_seen_at = datetime('now'), updated_at = datetime('now')
                    WHERE id = $id
                    """, ("$session", sessionId), ("$type", type), ("$title", title), ("$content", content),
                    ("$tool", string.IsNullOrEmpty(toolName) ? null : toolName), ("$topic", topicKey), ("$hash", hash), ("$id", revised));
                id = revised;
            }
            else if (tx.Scalar<long?>("""
                    SELECT id FROM observations
                    WHERE normalized_hash = $hash AND ifnull(project, '') = ifnull($project, '') AND scope = $scope AND type = $type
                      AND title = $title AND deleted_at IS NULL AND datetime(created_at) >= datetime('now', '-15 minutes')
                    ORDER BY created_at DESC LIMIT 1
                    """, ("$hash", hash), ("$project", EngramTransaction.NullIfEmpty(owner)), ("$scope", scope), ("$type", type),
                    ("$title", title)) is { } duplicate)
            {
                tx.Execute("""
                    UPDATE observations SET duplicate_count = duplicate_count + 1, last_seen_at = datetime('now'), updated_at = datetime('now')
                    WHERE id = $id
                    """, ("$id", duplicate));
                id = duplicate;
            }
            else
            {
                id = tx.Scalar<long>("""
                    INSERT INTO observations (sync_id, session_id, type, title, content, tool_name, project, scope, topic_key, normalized_hash,
                        revision_count, duplicate_count, last_seen_at, updated_at)
                    VALUES ($syncId, $session, $type, $title, $content, $tool, CAST($project AS TEXT), $scope, $topic, $hash,
                        1, 1, datetime('now'), datetime('now'))
                    RETURNING id
                    """, ("$syncId", NewSyncId("obs")), ("$session", sessionId), ("$type", type), ("$title", title), ("$content", content),
                    ("$tool", string.IsNullOrEmpty(toolName) ? null : toolName), ("$project", EngramTransaction.NullIfEmpty(owner)),
                    ("$scope", scope), ("$topic", EngramTransaction.NullIfEmpty(topicKey)), ("$hash", hash));
                if (ReviewAfterMonths.TryGetValue(type, out var months))
                {
                    tx.Execute("UPDATE observations SET review_after = $reviewAfter WHERE id = $id",
                        ("$reviewAfter", EngramTime.Sqlite(GoAddMonths(_clock.GetUtcNow(), months))), ("$id", id));
                }
            }
            var stored = ReadObservation(tx, "id = $id AND deleted_at IS NULL", ("$id", id))!;
            syncId = stored.Payload.SyncId;
            tx.Journal(stored.Payload, "upsert");
        });
        return new EngramWrite(syncId, seqs);
    }

    /// <summary>Edits a live observation's title and/or content (upstream's UpdateObservation): revision_count + 1, a version kept when either changed.</summary>
    public IReadOnlyList<long> UpdateObservation(string syncId, string? title, string? content)
    {
        title = title is null ? null : EngramRules.StripPrivateTags(title);
        content = content is null ? null : EngramRules.StoredContent(content);
        if (title is { Length: 0 } || content is { Length: 0 })
        {
            throw new ArgumentException("An observation's title and content cannot be empty.");
        }
        return Journaled(tx =>
        {
            var stored = ReadObservation(tx, "sync_id = $syncId AND deleted_at IS NULL ORDER BY id DESC LIMIT 1", ("$syncId", syncId))
                ?? throw new EngramNotFoundException($"Observation {syncId} not found.");
            var old = stored.Payload;
            if (string.IsNullOrWhiteSpace(old.Project))
            {
                throw new InvalidOperationException($"Observation {syncId} has no project.");
            }
            var newTitle = title ?? old.Title;
            var newContent = content ?? old.Content;
            if (newTitle != old.Title || newContent != old.Content)
            {
                KeepVersion(tx, stored.Id);
            }
            tx.Execute("""
                UPDATE observations
                SET type = $type, title = $title, content = $content, project = CAST($project AS TEXT), scope = $scope, topic_key = $topic,
                    normalized_hash = $hash, revision_count = revision_count + 1, updated_at = datetime('now')
                WHERE id = $id AND deleted_at IS NULL
                """, ("$type", old.Type), ("$title", newTitle), ("$content", newContent), ("$project", old.Project), ("$scope", old.Scope),
                ("$topic", EngramTransaction.NullIfEmpty(old.TopicKey ?? "")), ("$hash", EngramRules.NormalizedHash(newContent)), ("$id", stored.Id));
            tx.Journal(ReadObservation(tx, "id = $id", ("$id", stored.Id))!.Payload, "upsert");
        });
    }

    /// <summary>
    /// Deletes an observation (upstream's DeleteObservation). Soft: deleted_at set, the row stays. Hard: a delete
    /// tombstone, the row removed, relations touching it orphaned. Journals the delete when enrolled; otherwise
    /// supersedes the pending upserts of the key.
    /// </summary>
    public IReadOnlyList<long> DeleteObservation(string syncId, bool hard)
    {
        return Journaled(tx =>
        {
            var stored = ReadObservation(tx, (hard ? "sync_id = $syncId" : "sync_id = $syncId AND deleted_at IS NULL") + " ORDER BY id DESC LIMIT 1",
                ("$syncId", syncId)) ?? throw new EngramNotFoundException($"Observation {syncId} not found.");
            var observation = stored.Payload;
            var project = EngramRules.Project(observation.Project);
            if (project.Length == 0)
            {
                project = tx.SessionProject(observation.SessionId);
            }
            var deletedAt = tx.Now;
            if (hard)
            {
                tx.RecordDeleteTombstone("observation", syncId, observation.SessionId, project);
                tx.Execute("DELETE FROM observations WHERE id = $id", ("$id", stored.Id));
                tx.Execute("""
                    UPDATE memory_relations SET judgment_status = 'orphaned', updated_at = datetime('now')
                    WHERE source_id = $syncId OR target_id = $syncId
                    """, ("$syncId", syncId));
            }
            else
            {
                tx.Execute("UPDATE observations SET deleted_at = datetime('now'), updated_at = datetime('now') WHERE id = $id AND deleted_at IS NULL",
                    ("$id", stored.Id));
                deletedAt = tx.Scalar<string>("SELECT deleted_at FROM observations WHERE id = $id", ("$id", stored.Id))!;
            }
            if (!tx.Enrolled(project))
            {
                tx.SupersedePendingUpserts("observation", syncId, project);
                return;
            }
            tx.Journal(new ObservationPayload
            {
                SyncId = syncId,
                SessionId = observation.SessionId,
                Project = EngramTransaction.NullIfEmpty(project),
                Deleted = true,
                DeletedAt = deletedAt,
                HardDelete = hard,
            }, "delete");
        });
    }

    /// <summary>Saves a user prompt (upstream's AddPrompt) with a new <c>prompt-</c> sync id; created_at is SQLite's datetime('now').</summary>
    public EngramWrite AddPrompt(string sessionId, string content, string project = "")
    {
        content = EngramRules.StoredContent(content);
        if (content.Length == 0)
        {
            throw new ArgumentException("A prompt needs content.", nameof(content));
        }
        var syncId = NewSyncId("prompt");
        var seqs = Journaled(tx =>
        {
            var owner = ResolveWriteProject(tx, sessionId, EngramRules.Project(project));
            var createdAt = tx.Scalar<string>("""
                INSERT INTO user_prompts (sync_id, session_id, content, project, source_inbox_id, local_creation_session_id,
                    local_creation_inbox_id, local_creation_project)
                VALUES ($syncId, $session, $content, $project, NULL, NULL, NULL, NULL)
                RETURNING created_at
                """, ("$syncId", syncId), ("$session", sessionId), ("$content", content), ("$project", EngramTransaction.NullIfEmpty(owner)))!;
            tx.Execute("DELETE FROM prompt_tombstones WHERE sync_id = $syncId", ("$syncId", syncId));
            tx.Journal(new PromptPayload
            {
                SyncId = syncId,
                SessionId = sessionId,
                Content = content,
                Project = EngramTransaction.NullIfEmpty(owner),
                CreatedAt = createdAt,
            }, "upsert");
        });
        return new EngramWrite(syncId, seqs);
    }

    /// <summary>Deletes a prompt (always hard): a prompt tombstone, the row removed, the delete journaled when enrolled, else supersede.</summary>
    public IReadOnlyList<long> DeletePrompt(string syncId)
    {
        return Journaled(tx =>
        {
            var prompt = tx.Row("SELECT id, session_id, ifnull(project, '') FROM user_prompts WHERE sync_id = $syncId ORDER BY id DESC LIMIT 1",
                r => new { Id = r.GetInt64(0), SessionId = r.GetString(1), Project = r.GetString(2) }, ("$syncId", syncId))
                ?? throw new EngramNotFoundException($"Prompt {syncId} not found.");
            var project = EngramRules.Project(prompt.Project);
            if (project.Length == 0)
            {
                project = tx.SessionProject(prompt.SessionId);
            }
            tx.RecordPromptTombstone(syncId, prompt.SessionId, EngramTransaction.NullIfEmpty(project));
            tx.Execute("DELETE FROM user_prompts WHERE id = $id", ("$id", prompt.Id));
            if (!tx.Enrolled(project))
            {
                tx.SupersedePendingUpserts("prompt", syncId, project);
                return;
            }
            tx.Journal(new PromptPayload
            {
                SyncId = syncId,
                SessionId = prompt.SessionId,
                Project = EngramTransaction.NullIfEmpty(project),
                Deleted = true,
                DeletedAt = tx.Now,
                HardDelete = true,
            }, "delete");
        });
    }

    /// <summary>
    /// Records an actor's verdict on two observations of one project as a new <c>rel-</c> relation (upstream's
    /// pending admission and JudgeRelation, in one transaction). Journaled only when the source observation's
    /// project (else the target's) is enrolled, with the source's project.
    /// </summary>
    public EngramWrite JudgeRelation(string sourceSyncId, string targetSyncId, string relation, string? reason, double? confidence,
        string judgmentStatus = "judged", string markedByActor = "agent:claude-sonnet-4-6", string markedByKind = "agent",
        string? markedByModel = "claude-sonnet-4-6")
    {
        if (!RelationVerbs.Contains(relation))
        {
            throw new ArgumentException($"Invalid relation verb '{relation}'.", nameof(relation));
        }
        var syncId = NewSyncId("rel");
        var seqs = Journaled(tx =>
        {
            // A pulled delete may have removed an end since the user picked it: Engram refuses, as it would refuse the user.
            var sourceProject = ObservationProject(tx, sourceSyncId) ?? throw new EngramNotFoundException($"Observation {sourceSyncId} not found.");
            var targetProject = ObservationProject(tx, targetSyncId) ?? throw new EngramNotFoundException($"Observation {targetSyncId} not found.");
            if (sourceProject.Length > 0 && targetProject.Length > 0 && sourceProject != targetProject)
            {
                throw new InvalidOperationException("A relation cannot join observations of different projects.");
            }
            tx.Execute("""
                INSERT INTO memory_relations (sync_id, source_id, target_id, relation, reason, evidence, confidence, judgment_status,
                    marked_by_actor, marked_by_kind, marked_by_model, session_id, created_at, updated_at)
                VALUES ($syncId, $source, $target, $relation, $reason, NULL, $confidence, $status,
                    $actor, $kind, $model, NULL, datetime('now'), datetime('now'))
                """, ("$syncId", syncId), ("$source", sourceSyncId), ("$target", targetSyncId), ("$relation", relation), ("$reason", reason),
                ("$confidence", confidence), ("$status", judgmentStatus), ("$actor", markedByActor), ("$kind", markedByKind),
                ("$model", string.IsNullOrEmpty(markedByModel) ? null : markedByModel));
            if (!tx.Enrolled(sourceProject.Length > 0 ? sourceProject : targetProject))
            {
                return;
            }
            tx.Journal(tx.Row("""
                SELECT sync_id, ifnull(source_id, ''), ifnull(target_id, ''), relation, reason, evidence, confidence, judgment_status,
                    marked_by_actor, marked_by_kind, marked_by_model, session_id, created_at, updated_at
                FROM memory_relations WHERE sync_id = $syncId
                """, r => EngramBackfill.ReadRelation(r, sourceProject), ("$syncId", syncId))!);
        });
        return new EngramWrite(syncId, seqs);
    }

    /// <summary>
    /// Deletes a session and its prompts (upstream's DeleteSession), refused while any observation, soft-deleted
    /// included, references it. Prompt tombstones and a session tombstone; when enrolled a prompt delete per prompt,
    /// then the session delete; otherwise their pending upserts are superseded.
    /// </summary>
    public IReadOnlyList<long> DeleteSession(string id)
    {
        RequireSessionId(id);
        return Journaled(tx =>
        {
            var project = EngramRules.Project(tx.Scalar<string>("SELECT ifnull(project, '') FROM sessions WHERE id = $id", ("$id", id))
                ?? throw new InvalidOperationException($"Session {id} not found."));
            var enrolled = tx.Enrolled(project);
            var observations = tx.Scalar<long>("SELECT COUNT(*) FROM observations WHERE session_id = $id", ("$id", id));
            if (observations > 0)
            {
                throw new InvalidOperationException($"Session {id} still has {observations} observation(s).");
            }
            var prompts = tx.Rows("SELECT id, sync_id, session_id, ifnull(project, '') FROM user_prompts WHERE session_id = $id ORDER BY id",
                r => new PromptPayload
                {
                    SyncId = r.GetString(1),
                    SessionId = r.GetString(2),
                    Project = r.GetString(3).Trim().Length == 0 ? EngramTransaction.NullIfEmpty(project) : r.GetString(3),
                    Deleted = true,
                    DeletedAt = tx.Now,
                    HardDelete = true,
                }, ("$id", id));
            foreach (var prompt in prompts)
            {
                tx.RecordPromptTombstone(prompt.SyncId, prompt.SessionId, prompt.Project);
            }
            tx.RecordDeleteTombstone("session", id, "", project);
            tx.Execute("DELETE FROM user_prompts WHERE session_id = $id", ("$id", id));
            tx.Execute("DELETE FROM sessions WHERE id = $id", ("$id", id));
            if (enrolled)
            {
                foreach (var prompt in prompts)
                {
                    tx.Journal(prompt, "delete");
                }
                tx.Journal(new SessionPayload { Id = id, Project = project, Deleted = true, DeletedAt = tx.Now, HardDelete = true }, "delete");
                return;
            }
            foreach (var prompt in prompts)
            {
                tx.SupersedePendingUpserts("prompt", prompt.SyncId, prompt.Project ?? "");
            }
            tx.SupersedePendingUpserts("session", id, project);
        });
    }

    private IReadOnlyList<long> Journaled(Action<EngramTransaction> operation) => Write(tx =>
    {
        operation(tx);
        return tx.Seqs;
    });

    private T Write<T>(Func<EngramTransaction, T> operation) => Transact(operation, deferred: false);

    /// <summary>A read takes no write lock, so it never waits behind, or holds up, a device writing the same file.</summary>
    private T Read<T>(Func<EngramTransaction, T> operation) => Transact(operation, deferred: true);

    private T Transact<T>(Func<EngramTransaction, T> operation, bool deferred)
    {
        using var transaction = _connection.BeginTransaction(deferred);
        var result = operation(new EngramTransaction(transaction, EngramTime.Go(_clock.GetUtcNow()), _statements));
        transaction.Commit();
        return result;
    }

    /// <summary>Upstream's newSyncID: the prefix and 16 hex digits of 8 random bytes.</summary>
    private string NewSyncId(string prefix)
    {
        Span<byte> bytes = stackalloc byte[8];
        _random.NextBytes(bytes);
        return $"{prefix}-{Convert.ToHexStringLower(bytes)}";
    }

    /// <summary>
    /// The project a write lands in (upstream's resolveWriteProjectTx): the requested one, else the session's. A
    /// project-owned session refuses other projects; an unowned session adopts the write's project and journals that.
    /// </summary>
    private static string ResolveWriteProject(EngramTransaction tx, string sessionId, string requested)
    {
        var session = tx.Row("SELECT ifnull(project, ''), ifnull(ownership_mode, '') FROM sessions WHERE id = $id",
            r => new[] { EngramRules.Project(r.GetString(0)), r.GetString(1).Trim() }, ("$id", sessionId));
        if (requested.Length == 0)
        {
            return session is { } found && found[0].Length > 0
                ? found[0]
                : throw new InvalidOperationException($"Session {sessionId} gives the write no project.");
        }
        if (session is null || session[0] == requested)
        {
            return requested;
        }
        RequireWritable(sessionId, session[0], session[1], requested);
        if (session[0].Length == 0 && tx.Execute("UPDATE sessions SET project = $project WHERE id = $id AND ifnull(trim(project), '') = ''",
                ("$project", requested), ("$id", sessionId)) > 0)
        {
            tx.Journal(ReadSession(tx, sessionId), "upsert");
        }
        return requested;
    }

    private static void RequireWritable(string sessionId, string owner, string mode, string requested)
    {
        if (owner.Length == 0 || owner == requested || mode == "shared")
        {
            return;
        }
        throw new InvalidOperationException($"Session {sessionId} belongs to {owner} ({(mode.Length == 0 ? "unclassified" : mode)}), not {requested}.");
    }

    private static SessionPayload ReadSession(EngramTransaction tx, string id) =>
        tx.Row("SELECT id, ifnull(project, ''), ifnull(ownership_mode, ''), directory, started_at, ended_at, summary FROM sessions WHERE id = $id",
            EngramBackfill.ReadSession, ("$id", id)) ?? throw new InvalidOperationException($"Session {id} not found.");

    private static StoredObservation? ReadObservation(EngramTransaction tx, string where, params (string Name, object? Value)[] parameters) =>
        tx.Row($"SELECT {ObservationColumns} FROM observations WHERE {where}",
            r => new StoredObservation(r.GetInt64(0), EngramBackfill.ReadObservation(r, 1)), parameters);

    /// <summary>The project of a live observation (its own, else its session's, else blank), or null when there is none.</summary>
    private static string? ObservationProject(EngramTransaction tx, string syncId) =>
        tx.Scalar<string>("""
            SELECT coalesce(nullif(o.project, ''), s.project, '') FROM observations o LEFT JOIN sessions s ON s.id = o.session_id
            WHERE o.sync_id = $syncId AND o.deleted_at IS NULL
            """, ("$syncId", syncId));

    /// <summary>Keeps the title and content an overwrite is about to replace, as the next version of the observation.</summary>
    private static void KeepVersion(EngramTransaction tx, long id) =>
        tx.Execute("""
            INSERT INTO observation_versions (observation_id, title, content, version, created_at)
            SELECT o.id, o.title, o.content, (SELECT COALESCE(MAX(version), 0) + 1 FROM observation_versions WHERE observation_id = o.id), datetime('now')
            FROM observations o WHERE o.id = $id
            """, ("$id", id));

    /// <summary>Go's AddDate: a day past the end of the month rolls into the next month rather than being clamped.</summary>
    private static DateTimeOffset GoAddMonths(DateTimeOffset value, int months)
    {
        var first = new DateTimeOffset(value.Year, value.Month, 1, value.Hour, value.Minute, value.Second, value.Offset).AddMonths(months);
        return first.AddDays(value.Day - 1);
    }

    private static void RequireSessionId(string id)
    {
        if (string.IsNullOrWhiteSpace(id))
        {
            throw new ArgumentException("A session id is required.", nameof(id));
        }
    }

    private static string RequireProject(string project)
    {
        var normalized = EngramRules.Project(project);
        return normalized.Length > 0 ? normalized : throw new ArgumentException("A project is required.", nameof(project));
    }

    private sealed record StoredObservation(long Id, ObservationPayload Payload);
}
