using System.Text;
using System.Text.Json;
using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.CloudIngest.Push;

/// <summary>
/// Checks a batch before it touches the database. Whole-batch problems refuse the batch; problems
/// of one mutation reject only that mutation, so one bad row never blocks a device.
/// </summary>
public sealed class BatchValidator(IngestOptions options)
{
    /// <summary>Longest target key, device id or entity key accepted.</summary>
    public const int MaxKeyLength = 200;

    /// <summary>Returns (reason, detail) when the whole batch must be refused, else null.</summary>
    public (string Reason, string Detail)? CheckBatch(PushMutations batch)
    {
        if (KeyProblem(batch.TargetKey) is { } targetProblem)
        {
            return (RejectionReasons.InvalidBatch, $"targetKey {targetProblem}");
        }
        if (KeyProblem(batch.DeviceId) is { } deviceProblem)
        {
            return (RejectionReasons.InvalidBatch, $"deviceId {deviceProblem}");
        }
        if (batch.PreviousLocalSeq < 0)
        {
            return (RejectionReasons.InvalidBatch, $"previousLocalSeq {batch.PreviousLocalSeq} is negative");
        }
        if (batch.Mutations is null)
        {
            return (RejectionReasons.InvalidBatch, "mutations is missing");
        }
        if (batch.Mutations.Count == 0)
        {
            return (RejectionReasons.EmptyBatch, "the batch has no mutations");
        }
        if (batch.Mutations.Any(m => m is null))
        {
            return (RejectionReasons.InvalidBatch, "mutations contains null");
        }
        if (batch.Mutations.Count > options.MaxBatchMutations)
        {
            return (RejectionReasons.BatchTooLarge,
                $"{batch.Mutations.Count} mutations; the limit is {options.MaxBatchMutations}");
        }
        // A single oversized mutation is rejected on its own below, so it cannot wedge its device.
        if (batch.Mutations.Count > 1 && BatchBytes(batch) is var bytes && bytes > options.MaxBatchBytes)
        {
            return (RejectionReasons.BatchTooLarge, $"{bytes} payload bytes; the limit is {options.MaxBatchBytes}");
        }
        return null;
    }

    /// <summary>
    /// Returns (reason, detail) when this mutation must be rejected. <paramref name="previousSeq"/> is
    /// the local seq before it in the batch (or the batch's previousLocalSeq).
    /// </summary>
    public (string Reason, string Detail)? CheckMutation(Mutation mutation, long previousSeq)
    {
        if (mutation.LocalSeq <= previousSeq)
        {
            return (RejectionReasons.NonIncreasingLocalSeq,
                $"local seq {mutation.LocalSeq} does not follow {previousSeq}");
        }
        if (mutation.Entity is null || !WireNames.Entities.Contains(mutation.Entity))
        {
            return (RejectionReasons.UnknownEntity, $"entity '{Truncate(mutation.Entity)}' is not one of {string.Join(", ", WireNames.Entities)}");
        }
        if (mutation.Op is null || !WireNames.Ops.Contains(mutation.Op))
        {
            return (RejectionReasons.UnknownOp, $"op '{Truncate(mutation.Op)}' is not one of {string.Join(", ", WireNames.Ops)}");
        }
        if (KeyProblem(mutation.EntityKey) is { } keyProblem)
        {
            return (RejectionReasons.InvalidEntityKey, $"entityKey {keyProblem}");
        }
        if (mutation.Payload is null)
        {
            return (RejectionReasons.PayloadNotJson, "payload is missing");
        }
        var payloadBytes = Encoding.UTF8.GetByteCount(mutation.Payload);
        if (payloadBytes > options.MaxPayloadBytes)
        {
            return (RejectionReasons.PayloadTooLarge, $"{payloadBytes} bytes; the limit is {options.MaxPayloadBytes}");
        }
        if (JsonProblem(mutation.Payload) is { } jsonProblem)
        {
            return (RejectionReasons.PayloadNotJson, jsonProblem);
        }
        return null;
    }

    public static long BatchBytes(PushMutations batch) =>
        batch.Mutations.Sum(m => (long)Encoding.UTF8.GetByteCount(m.Payload ?? ""));

    /// <summary>Why a target key, device id or entity key is unusable, or null when it is fine.</summary>
    public static string? KeyProblem(string? key)
    {
        if (string.IsNullOrWhiteSpace(key))
        {
            return "is empty";
        }
        if (key.Length > MaxKeyLength)
        {
            return $"is {key.Length} characters; the limit is {MaxKeyLength}";
        }
        if (key.Any(char.IsControl) || !IsWellFormedUtf16(key))
        {
            return "contains control characters or broken UTF-16";
        }
        return null;
    }

    /// <summary>
    /// Accepts what PostgreSQL's jsonb accepts: well-formed JSON whose strings hold no NUL and no
    /// lone surrogate (System.Text.Json reports both when a string is decoded).
    /// </summary>
    private static string? JsonProblem(string payload)
    {
        if (!IsWellFormedUtf16(payload))
        {
            return "payload holds broken UTF-16 (a lone surrogate)";
        }
        try
        {
            var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(payload),
                new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
            while (reader.Read())
            {
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName
                    && reader.GetString()!.Contains('\0', StringComparison.Ordinal))
                {
                    return "payload holds a \\u0000 character, which the cloud store cannot keep";
                }
            }
            return null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return $"payload is not valid JSON: {Truncate(e.Message)}";
        }
    }

    private static bool IsWellFormedUtf16(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                return false;
            }
        }
        return true;
    }

    private static string Truncate(string? text) =>
        text is null ? "(null)" : text.Length <= 80 ? text : string.Concat(text.AsSpan(0, 80), "…");
}
