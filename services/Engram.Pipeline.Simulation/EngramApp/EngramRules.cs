using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>How upstream Engram normalizes what it is given before it stores it.</summary>
internal static partial class EngramRules
{
    /// <summary>Upstream's MaxObservationLength, in UTF-8 bytes; prompts are cut at the same length.</summary>
    public const int MaxContentBytes = 50_000;

    public const string TruncationMarker = "... [truncated]";

    /// <summary>Every rune Go's strings.TrimSpace strips, for SQLite's trim(X, Y) (upstream's sqlWhitespaceTrimSet).</summary>
    public const string WhitespaceTrimSet =
        "\t\n\v\f\r \u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000";

    /// <summary>
    /// Upstream's NormalizeProject: trimmed and lowercased. Upstream also collapses repeated '-' and '_'; the names
    /// used here never repeat them.
    /// </summary>
    public static string Project(string? project) => (project ?? "").Trim().ToLowerInvariant();

    public static string Scope(string? scope) => (scope ?? "").Trim().ToLowerInvariant() switch
    {
        "personal" => "personal",
        "global" => "global",
        _ => "project",
    };

    /// <summary>Trimmed, lowercased, whitespace runs joined by '-', at most 120 bytes (cut on a character boundary).</summary>
    public static string TopicKey(string? topicKey)
    {
        var fields = Fields((topicKey ?? "").ToLowerInvariant());
        return fields.Length == 0 ? "" : CutUtf8(string.Join('-', fields), 120);
    }

    /// <summary>Upstream's stripPrivateTags: &lt;private&gt;…&lt;/private&gt; becomes [REDACTED], then the text is trimmed.</summary>
    public static string StripPrivateTags(string text) => PrivateTag().Replace(text, "[REDACTED]").Trim();

    /// <summary>Redacted, trimmed, and cut after 50,000 bytes on a character boundary with the truncation marker.</summary>
    public static string StoredContent(string content)
    {
        var stripped = StripPrivateTags(content);
        return Encoding.UTF8.GetByteCount(stripped) <= MaxContentBytes ? stripped : CutUtf8(stripped, MaxContentBytes) + TruncationMarker;
    }

    /// <summary>Lowercase hex SHA-256 of the content lowercased with whitespace runs collapsed (upstream's hashNormalized).</summary>
    public static string NormalizedHash(string content)
    {
        var normalized = string.Join(' ', Fields(content)).ToLowerInvariant();
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(normalized)));
    }

    /// <summary>The longest prefix of <paramref name="text"/> of at most <paramref name="maxBytes"/> UTF-8 bytes that ends on a character boundary.</summary>
    public static string CutUtf8(string text, int maxBytes)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length <= maxBytes)
        {
            return text;
        }
        var end = maxBytes;
        while (end > 0 && (bytes[end] & 0xC0) == 0x80)
        {
            end--;
        }
        return Encoding.UTF8.GetString(bytes, 0, end);
    }

    private static string[] Fields(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    [GeneratedRegex("<private>.*?</private>", RegexOptions.IgnoreCase | RegexOptions.Singleline | RegexOptions.CultureInvariant)]
    private static partial Regex PrivateTag();
}
