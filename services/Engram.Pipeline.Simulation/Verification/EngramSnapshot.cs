using System.Text.Json;
using Engram.Pipeline.DeviceSync;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Simulation.Verification;

/// <summary>
/// What sync carries of one project in an Engram database, as text per entity, for comparing devices: every synced
/// column of the live sessions, observations, prompts and relations (a deleted or soft-deleted memory is not live, nor
/// is a relation with a deleted end). Device-local columns
/// (<c>id</c>, <c>pinned</c>, embeddings, <c>normalized_hash</c>) are left out. <see cref="Core"/> holds what the
/// cloud log alone decides (the last mutation of the entity), which <see cref="FromPayload"/> computes from a payload.
/// <see cref="HeldBack"/> are the entities whose own edit the cloud rejected; <see cref="Unapplied"/> those with a pulled
/// mutation waiting for its parent or dead in <c>sync_apply_deferred</c>.
/// </summary>
public sealed record EngramSnapshot(
    Dictionary<(string Entity, string Key), string> Rows, Dictionary<(string Entity, string Key), string> Core, HashSet<(string, string)> HeldBack,
    HashSet<(string, string)> Unapplied)
{
    /// <summary>Reads one project of the Engram database open on <paramref name="connection"/>.</summary>
    public static async Task<EngramSnapshot> ReadAsync(SqliteConnection connection, string project, CancellationToken ct)
    {
        var target = new SyncTarget(project);
        var rows = new Dictionary<(string, string), string>();
        var core = new Dictionary<(string, string), string>();
        void Add(string entity, string key, string full, string? coreState)
        {
            rows[(entity, key)] = full;
            if (coreState is not null)
            {
                core[(entity, key)] = coreState;
            }
        }
        await InvariantChecker.ReadAsync(connection, target, """
            SELECT id, project, directory, started_at, ended_at, summary, ownership_mode FROM sessions WHERE project = $project
            """, r => Add("session", r.GetString(0), Join(r, 7), SessionCore(r.GetString(0), r.GetString(1), r.GetString(2))), ct);
        await InvariantChecker.ReadAsync(connection, target, """
            SELECT sync_id, session_id, type, title, content, tool_name, project, scope, topic_key, revision_count, duplicate_count,
                   created_at, updated_at
            FROM observations WHERE project = $project AND sync_id IS NOT NULL AND deleted_at IS NULL
            """, r => Add("observation", r.GetString(0), Join(r, 13),
                ObservationCore(r.GetString(2), r.GetString(3), r.GetString(4), Nullable(r, 6), r.GetString(7), Nullable(r, 8))), ct);
        await InvariantChecker.ReadAsync(connection, target, """
            SELECT sync_id, session_id, content, project, created_at, source_inbox_id FROM user_prompts WHERE project = $project AND sync_id IS NOT NULL
            """, r => Add("prompt", r.GetString(0), Join(r, 6), PromptCore(r.GetString(2), Nullable(r, 3))), ct);
        await InvariantChecker.ReadAsync(connection, target, """
            SELECT r.sync_id, r.source_id, r.target_id, r.relation, r.reason, r.evidence, r.confidence, r.judgment_status, r.marked_by_actor,
                   r.marked_by_kind, r.marked_by_model, r.session_id, r.created_at, r.updated_at
            FROM memory_relations r
            JOIN observations o ON o.sync_id = r.source_id AND o.deleted_at IS NULL
            JOIN observations t ON t.sync_id = r.target_id AND t.deleted_at IS NULL
            WHERE o.project = $project AND r.judgment_status <> 'orphaned'
            """, r => Add("relation", r.GetString(0), Join(r, 14), RelationCore(Nullable(r, 1), Nullable(r, 2), r.GetString(3), r.GetString(7))), ct);
        var heldBack = new HashSet<(string, string)>();
        await InvariantChecker.ReadAsync(connection, target, """
            SELECT entity, entity_key FROM sync_mutations WHERE target_key = 'cloud' AND project = $project AND disposition = 'quarantined'
            """, r => heldBack.Add((r.GetString(0), r.GetString(1))), ct);
        var unapplied = new HashSet<(string, string)>();
        await InvariantChecker.ReadAsync(connection, target, """
            SELECT entity, entity_key FROM sync_apply_deferred WHERE target_key = 'cloud' AND project = $project AND sync_id LIKE 'pipeline-%'
            """, r => unapplied.Add((r.GetString(0), r.GetString(1))), ct);
        return new EngramSnapshot(rows, core, heldBack, unapplied);
    }

    /// <summary>What the device holds of an entity after <paramref name="op"/> with <paramref name="payload"/> was its last mutation; null: nothing.</summary>
    public static string? FromPayload(string entity, string op, string payload)
    {
        JsonElement json;
        try
        {
            using var document = JsonDocument.Parse(payload);
            json = document.RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
        if (json.ValueKind != JsonValueKind.Object)
        {
            // Dead on every device: not a memory.
            return null;
        }
        var deleted = op == "delete" || Flag(json, "deleted") || Flag(json, "hard_delete");
        return entity switch
        {
            "observation" when deleted => null,
            "observation" => ObservationCore(Text(json, "type") ?? "", Text(json, "title") ?? "", Text(json, "content") ?? "",
                Text(json, "project"), NormalScope(Text(json, "scope")), Text(json, "topic_key")),
            "session" when deleted => null,
            "session" => SessionCore(Text(json, "id") ?? "", Text(json, "project") ?? "", Text(json, "directory") ?? ""),
            "prompt" when deleted => null,
            "prompt" => PromptCore(Text(json, "content") ?? "", Text(json, "project")),
            "relation" => RelationCore(Text(json, "source_id"), Text(json, "target_id"), Text(json, "relation") ?? "",
                Text(json, "judgment_status") ?? ""),
            _ => null,
        };
    }

    private static string SessionCore(string id, string project, string directory) => $"session {id} {project} {directory}";

    private static string ObservationCore(string type, string title, string content, string? project, string scope, string? topicKey) =>
        $"observation {type} {title} {project} {scope} {topicKey} {content.Length}:{content}";

    private static string PromptCore(string content, string? project) => $"prompt {project} {content.Length}:{content}";

    private static string RelationCore(string? source, string? target, string relation, string status) =>
        $"relation {source} {target} {relation} {status}";

    /// <summary>As upstream stores a scope: personal and global stay, anything else is project.</summary>
    private static string NormalScope(string? scope) => scope is "personal" or "global" ? scope : "project";

    private static bool Flag(JsonElement json, string name) => json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.True;

    private static string? Text(JsonElement json, string name) => InvariantChecker.Text(json, name);

    private static string? Nullable(SqliteDataReader row, int column) => row.IsDBNull(column) ? null : row.GetValue(column).ToString();

    private static string Join(SqliteDataReader row, int columns) =>
        string.Join('\u001f', Enumerable.Range(0, columns).Select(i => row.IsDBNull(i) ? "\u2205" : Convert.ToString(row.GetValue(i),
            System.Globalization.CultureInfo.InvariantCulture)));
}
