using System.Diagnostics.CodeAnalysis;
using System.Text.Json;

namespace Engram.Pipeline.DeviceSync.Apply;

// The payloads upstream's journal carries. Every member is nullable: Go reads a missing or null field as its zero
// value, and the appliers do the same with `?? ""` where upstream's field is a plain string.

internal sealed record SessionPayload(
    string? Id, string? Project, string? OwnershipMode, string? Directory, string? StartedAt, string? EndedAt, string? Summary,
    bool? Deleted, string? DeletedAt, bool? HardDelete)
{
    public bool IsDelete => Deleted == true || HardDelete == true || !EngramRules.IsBlank(DeletedAt);
}

internal sealed record ObservationPayload(
    string? SyncId, string? SessionId, string? Type, string? Title, string? Content, string? ToolName, string? Project,
    string? Scope, string? TopicKey, long? RevisionCount, long? DuplicateCount, string? LastSeenAt, string? CreatedAt,
    string? UpdatedAt, string? DeletedAt, bool? HardDelete);

internal sealed record PromptPayload(
    string? SourceInboxId, string? SyncId, string? SessionId, string? Content, string? Project, string? CreatedAt,
    bool? Deleted, string? DeletedAt, bool? HardDelete);

internal sealed record RelationPayload(
    string? SyncId, string? SourceId, string? TargetId, string? Relation, string? Reason, string? Evidence, double? Confidence,
    string? JudgmentStatus, string? MarkedByActor, string? MarkedByKind, string? MarkedByModel, string? SessionId,
    string? Project, string? CreatedAt, string? UpdatedAt);

/// <summary>Reads payloads as upstream's <c>decodeSyncPayload</c> does: Go's field matching is case-insensitive, and a
/// payload may be a JSON string that holds the JSON.</summary>
internal static class PayloadJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        PropertyNameCaseInsensitive = true,
    };

    public static bool TryRead<T>(string payload, [NotNullWhen(true)] out T? value, [NotNullWhen(false)] out string? error)
        where T : class
    {
        try
        {
            value = JsonSerializer.Deserialize<T>(Unwrap(payload), Options);
            error = value is null ? "undecodable payload: it is null" : null;
            return value is not null;
        }
        catch (JsonException e)
        {
            value = null;
            error = $"undecodable payload: {e.Message}";
            return false;
        }
    }

    /// <summary>
    /// Upstream's admission rule for a session upsert pulled from the cloud: a project-owned session may omit its
    /// directory; any other must carry it as a JSON string (blank allowed). A missing key or null is refused.
    /// </summary>
    public static bool SessionDirectoryAdmissible(string payload)
    {
        using var document = JsonDocument.Parse(Unwrap(payload));
        var root = document.RootElement;
        var projectOwned = root.TryGetProperty("ownership_mode", out var mode)
            && mode.ValueKind == JsonValueKind.String && mode.GetString() == "project_owned";
        return root.TryGetProperty("directory", out var directory)
            ? directory.ValueKind == JsonValueKind.String
            : projectOwned;
    }

    private static string Unwrap(string payload)
    {
        var trimmed = (payload ?? "").Trim();
        if (trimmed.Length == 0)
        {
            throw new JsonException("empty payload");
        }
        return trimmed[0] == '"' ? JsonSerializer.Deserialize<string>(trimmed) ?? "" : trimmed;
    }
}
