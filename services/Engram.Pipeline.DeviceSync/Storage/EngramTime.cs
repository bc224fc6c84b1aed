using System.Globalization;

namespace Engram.Pipeline.DeviceSync.Storage;

/// <summary>
/// The timestamp forms found in an Engram database. Upstream writes SQLite's <c>datetime('now')</c> form in most
/// columns, Go's <c>Now()</c> with nine fraction digits in some payloads and delete times, and RFC 3339 for its
/// lease. Columns of upstream's are written in upstream's form; the pipeline's own tables use round-trip ISO 8601.
/// </summary>
public static class EngramTime
{
    private static readonly string[] Readable =
    [
        "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm:ss.FFFFFFF", "yyyy-MM-dd'T'HH:mm:ss'Z'", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'",
        "yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK", "yyyy-MM-dd",
    ];

    /// <summary>SQLite's <c>datetime('now')</c> form, UTC: <c>2026-09-03 05:06:18</c>.</summary>
    public static string Sqlite(DateTimeOffset value) =>
        value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    /// <summary>Upstream's Go <c>Now()</c> form, UTC, nine fraction digits: <c>2026-10-09 10:51:23.521496944</c>.</summary>
    public static string Go(DateTimeOffset value) =>
        value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fffffff", CultureInfo.InvariantCulture) + "00";

    /// <summary>RFC 3339 in whole seconds, UTC, as upstream writes <c>lease_until</c>: <c>2026-09-03T05:07:18Z</c>.</summary>
    public static string Rfc3339(DateTimeOffset value) =>
        value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>Round-trip ISO 8601, for the pipeline's own columns.</summary>
    public static string Iso(DateTimeOffset value) => value.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture);

    /// <summary>
    /// Reads RFC 3339 (what Go's <c>time.RFC3339</c> accepts: a <c>T</c>, seconds, a fraction of up to nine digits, and
    /// <c>Z</c> or an offset); null otherwise.
    /// </summary>
    public static DateTimeOffset? ParseRfc3339(string? text) =>
        text is not null && TruncateFraction(text, maxDigits: 9) is { } readable
            && DateTimeOffset.TryParseExact(readable, ["yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK"],
                CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal, out var value)
            && (text.EndsWith('Z') || text.Contains('+') || text.LastIndexOf('-') > 10)
            ? value
            : null;

    /// <summary>Reads any of those forms (times without a zone are UTC, as upstream writes them); null when it cannot.</summary>
    public static DateTimeOffset? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        var trimmed = TruncateFraction(text.Trim(), maxDigits: int.MaxValue)!;
        return DateTimeOffset.TryParseExact(trimmed, Readable, CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var value)
            ? value
            : DateTimeOffset.TryParse(trimmed, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out value)
                ? value
                : null;
    }

    /// <summary>
    /// Cuts a fraction of seconds to the seven digits .NET reads (Go writes nine); null when it has more than
    /// <paramref name="maxDigits"/>.
    /// </summary>
    private static string? TruncateFraction(string text, int maxDigits)
    {
        var point = text.IndexOf('.', StringComparison.Ordinal);
        if (point < 0)
        {
            return text;
        }
        var end = point + 1;
        while (end < text.Length && char.IsAsciiDigit(text[end]))
        {
            end++;
        }
        var digits = end - point - 1;
        return digits > maxDigits ? null : digits > 7 ? text[..(point + 8)] + text[end..] : text;
    }
}
