using System.Globalization;
using System.Text;
using System.Text.Json;
using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.Cloud.Push;

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
            return (RejectionReasons.UnknownEntity, $"entity '{Printable(mutation.Entity)}' is not one of {string.Join(", ", WireNames.Entities)}");
        }
        if (mutation.Op is null || !WireNames.Ops.Contains(mutation.Op))
        {
            return (RejectionReasons.UnknownOp, $"op '{Printable(mutation.Op)}' is not one of {string.Join(", ", WireNames.Ops)}");
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
    /// lone surrogate (System.Text.Json reports both when a string is decoded), and whose numbers fit
    /// PostgreSQL's numeric.
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
                if (reader.TokenType is JsonTokenType.Number && NumberProblem(reader.ValueSpan) is { } numberProblem)
                {
                    return numberProblem;
                }
            }
            return null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return $"payload is not valid JSON: {Printable(e.Message)}";
        }
    }

    /// <summary>
    /// PostgreSQL keeps a JSON number as a numeric: at most 131,072 digits before the decimal point and
    /// 16,383 after it, counted as written (<c>1.50e-3</c> has 5 after it), and an exponent smaller than int.MaxValue / 2.
    /// </summary>
    private static string? NumberProblem(ReadOnlySpan<byte> number)
    {
        const int maxIntegerDigits = 131_072, maxFractionDigits = 16_383, maxExponent = int.MaxValue / 2;
        var e = number.IndexOfAny("eE"u8);
        var mantissa = e < 0 ? number : number[..e];
        long exponent = 0;
        if (e >= 0 && (!long.TryParse(number[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out exponent)
                       || Math.Abs(exponent) >= maxExponent))
        {
            return "payload holds a number whose exponent is out of the cloud store's range";
        }
        var point = mantissa.IndexOf((byte)'.');
        var integer = (point < 0 ? mantissa : mantissa[..point]).TrimStart((byte)'-');
        var fraction = point < 0 ? [] : mantissa[(point + 1)..];
        if (fraction.Length - exponent > maxFractionDigits)
        {
            return $"payload holds a number with more than {maxFractionDigits} digits after the decimal point";
        }
        // Digits before the point, counted from the first non-zero one; a zero has none.
        var firstInInteger = integer.IndexOfAnyExcept((byte)'0');
        var firstInFraction = fraction.IndexOfAnyExcept((byte)'0');
        var integerDigits = firstInInteger >= 0 ? integer.Length - firstInInteger + exponent
            : firstInFraction >= 0 ? exponent - firstInFraction
            : 0L;
        return integerDigits > maxIntegerDigits
            ? $"payload holds a number with more than {maxIntegerDigits} digits before the decimal point"
            : null;
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

    /// <summary>
    /// Up to 80 characters of <paramref name="text"/> fit to be stored and logged: control characters and
    /// surrogates (a pair may be cut in two) written as <c>\uXXXX</c>, since PostgreSQL keeps neither NUL nor
    /// a lone surrogate in text.
    /// </summary>
    public static string Printable(string? text)
    {
        if (text is null)
        {
            return "(null)";
        }
        var shown = text.AsSpan(0, Math.Min(text.Length, 80));
        var printable = new StringBuilder(shown.Length + 1);
        foreach (var c in shown)
        {
            if (char.IsControl(c) || char.IsSurrogate(c))
            {
                printable.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                printable.Append(c);
            }
        }
        return text.Length > shown.Length ? printable.Append('…').ToString() : printable.ToString();
    }
}
