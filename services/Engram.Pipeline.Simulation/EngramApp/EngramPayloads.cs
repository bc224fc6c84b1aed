namespace Engram.Pipeline.Simulation.EngramApp;

// The payloads upstream Engram journals in sync_mutations.payload, one record per Go struct. A `string` member is a
// Go string (tagged omitempty where the struct says so), a `string?` member a Go *string (omitted only when nil: a
// pointer to "" is written), so that ToJson writes exactly what json.Marshal writes.

/// <summary>A session upsert or delete (upstream's <c>syncSessionPayload</c>).</summary>
public sealed record SessionPayload
{
    public required string Id { get; init; }
    public required string Project { get; init; }
    public string OwnershipMode { get; init; } = "";
    public string Directory { get; init; } = "";
    public string StartedAt { get; init; } = "";
    public string? EndedAt { get; init; }
    public string? Summary { get; init; }
    public bool Deleted { get; init; }
    public string? DeletedAt { get; init; }
    public bool HardDelete { get; init; }

    public string ToJson() => new GoJsonObject()
        .String("id", Id)
        .String("project", Project)
        .StringOmitEmpty("ownership_mode", OwnershipMode)
        .StringOmitEmpty("directory", Directory)
        .StringOmitEmpty("started_at", StartedAt)
        .StringOrNil("ended_at", EndedAt)
        .StringOrNil("summary", Summary)
        .TrueOmitFalse("deleted", Deleted)
        .StringOrNil("deleted_at", DeletedAt)
        .TrueOmitFalse("hard_delete", HardDelete)
        .Build();
}

/// <summary>
/// An observation upsert or delete (upstream's <c>syncObservationPayload</c>). A delete carries empty type, title,
/// content and scope and zero counts, which Go still writes: those fields are not omitempty.
/// </summary>
public sealed record ObservationPayload
{
    public required string SyncId { get; init; }
    public required string SessionId { get; init; }
    public string Type { get; init; } = "";
    public string Title { get; init; } = "";
    public string Content { get; init; } = "";
    public string? ToolName { get; init; }
    public string? Project { get; init; }
    public string Scope { get; init; } = "";
    public string? TopicKey { get; init; }
    public long RevisionCount { get; init; }
    public long DuplicateCount { get; init; }
    public string? LastSeenAt { get; init; }
    public string CreatedAt { get; init; } = "";
    public string UpdatedAt { get; init; } = "";
    public bool Deleted { get; init; }
    public string? DeletedAt { get; init; }
    public bool HardDelete { get; init; }

    public string ToJson() => new GoJsonObject(Content.Length + 512)
        .String("sync_id", SyncId)
        .String("session_id", SessionId)
        .String("type", Type)
        .String("title", Title)
        .String("content", Content)
        .StringOrNil("tool_name", ToolName)
        .StringOrNil("project", Project)
        .String("scope", Scope)
        .StringOrNil("topic_key", TopicKey)
        .Int("revision_count", RevisionCount)
        .Int("duplicate_count", DuplicateCount)
        .StringOrNil("last_seen_at", LastSeenAt)
        .StringOmitEmpty("created_at", CreatedAt)
        .StringOmitEmpty("updated_at", UpdatedAt)
        .TrueOmitFalse("deleted", Deleted)
        .StringOrNil("deleted_at", DeletedAt)
        .TrueOmitFalse("hard_delete", HardDelete)
        .Build();
}

/// <summary>A prompt upsert or delete (upstream's <c>syncPromptPayload</c>); prompt deletes are always hard.</summary>
public sealed record PromptPayload
{
    public string SourceInboxId { get; init; } = "";
    public required string SyncId { get; init; }
    public required string SessionId { get; init; }
    public string Content { get; init; } = "";
    public string? Project { get; init; }
    public string CreatedAt { get; init; } = "";
    public bool Deleted { get; init; }
    public string? DeletedAt { get; init; }
    public bool HardDelete { get; init; }

    public string ToJson() => new GoJsonObject(Content.Length + 256)
        .StringOmitEmpty("source_inbox_id", SourceInboxId)
        .String("sync_id", SyncId)
        .String("session_id", SessionId)
        .String("content", Content)
        .StringOrNil("project", Project)
        .StringOmitEmpty("created_at", CreatedAt)
        .TrueOmitFalse("deleted", Deleted)
        .StringOrNil("deleted_at", DeletedAt)
        .TrueOmitFalse("hard_delete", HardDelete)
        .Build();
}

/// <summary>A judged relation (upstream's <c>syncRelationPayload</c>); relations are only ever upserted.</summary>
public sealed record RelationPayload
{
    public required string SyncId { get; init; }
    public required string SourceId { get; init; }
    public required string TargetId { get; init; }
    public required string Relation { get; init; }
    public string? Reason { get; init; }
    public string? Evidence { get; init; }
    public double? Confidence { get; init; }
    public required string JudgmentStatus { get; init; }
    public string? MarkedByActor { get; init; }
    public string? MarkedByKind { get; init; }
    public string? MarkedByModel { get; init; }
    public string? SessionId { get; init; }
    public required string Project { get; init; }
    public required string CreatedAt { get; init; }
    public required string UpdatedAt { get; init; }

    public string ToJson() => new GoJsonObject()
        .String("sync_id", SyncId)
        .String("source_id", SourceId)
        .String("target_id", TargetId)
        .String("relation", Relation)
        .StringOrNil("reason", Reason)
        .StringOrNil("evidence", Evidence)
        .FloatOrNil("confidence", Confidence)
        .String("judgment_status", JudgmentStatus)
        .StringOrNil("marked_by_actor", MarkedByActor)
        .StringOrNil("marked_by_kind", MarkedByKind)
        .StringOrNil("marked_by_model", MarkedByModel)
        .StringOrNil("session_id", SessionId)
        .String("project", Project)
        .String("created_at", CreatedAt)
        .String("updated_at", UpdatedAt)
        .Build();
}
