using System.Text.Json.Nodes;

namespace Engram.Pipeline.Integration.Tests.BadInput;

/// <summary>PushMutations as JSON, to be sent as it is or spoiled first.</summary>
public static class PushJson
{
    /// <summary>A batch for target <c>team</c>.</summary>
    public static JsonObject Batch(string deviceId, long previousLocalSeq, params JsonObject?[] mutations) => new()
    {
        ["targetKey"] = "team",
        ["deviceId"] = deviceId,
        ["previousLocalSeq"] = previousLocalSeq,
        ["mutations"] = new JsonArray(mutations.Select(m => (JsonNode?)m).ToArray()),
    };

    /// <summary>A valid observation upsert.</summary>
    public static JsonObject Mutation(long localSeq) => new()
    {
        ["localSeq"] = localSeq,
        ["entity"] = "observation",
        ["op"] = "upsert",
        ["entityKey"] = $"bad-input-{localSeq}",
        ["payload"] = $$"""{"sync_id":"bad-input-{{localSeq}}","title":"fine"}""",
        ["occurredAt"] = "2025-06-01T12:00:00Z",
    };

    public static JsonObject With(this JsonObject json, string name, JsonNode? value)
    {
        json[name] = value;
        return json;
    }

    public static JsonObject Without(this JsonObject json, string name)
    {
        json.Remove(name);
        return json;
    }
}
