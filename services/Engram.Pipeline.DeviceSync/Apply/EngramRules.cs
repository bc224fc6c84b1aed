using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>Upstream Engram's names and small normalisations, as its store applies them to pulled rows.</summary>
internal static class EngramRules
{
    public const string Session = "session";
    public const string Observation = "observation";
    public const string Prompt = "prompt";
    public const string Relation = "relation";
    public const string Upsert = "upsert";
    public const string Delete = "delete";

    /// <summary>Every character Go's <c>strings.TrimSpace</c> strips, for SQLite's <c>trim(X, Y)</c> (one-argument trim strips only spaces).</summary>
    public static readonly string WhitespaceTrimSet =
        new([.. Enumerable.Range(0, char.MaxValue + 1).Select(c => (char)c).Where(char.IsWhiteSpace)]);

    /// <summary>Upstream's per-project sync target, under which the pipeline keeps its cloud seqs.</summary>
    public static string TargetKey(string project) => "cloud:" + project;

    /// <summary>Go's <c>strings.TrimSpace(s) == ""</c> (.NET's whitespace is Unicode's White_Space, as Go's).</summary>
    public static bool IsBlank([NotNullWhen(false)] string? value) => string.IsNullOrWhiteSpace(value);

    /// <summary>Go's <c>nullableString</c>: only the empty string is absent.</summary>
    public static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>Upstream's <c>NormalizeProject</c>: trimmed, lower case, runs of <c>-</c> and <c>_</c> collapsed.</summary>
    public static string NormalizeProject(string? project)
    {
        var normalized = (project ?? "").Trim().ToLowerInvariant();
        while (normalized.Contains("--", StringComparison.Ordinal))
        {
            normalized = normalized.Replace("--", "-", StringComparison.Ordinal);
        }
        while (normalized.Contains("__", StringComparison.Ordinal))
        {
            normalized = normalized.Replace("__", "_", StringComparison.Ordinal);
        }
        return normalized;
    }

    public static string NormalizeScope(string? scope) => (scope ?? "").Trim().ToLowerInvariant() switch
    {
        "personal" => "personal",
        "global" => "global",
        _ => "project",
    };

    /// <summary>Upstream's <c>hashNormalized</c>: SHA-256 hex of the content with whitespace runs collapsed to one space, lower case.</summary>
    public static string HashNormalized(string content)
    {
        var collapsed = string.Join(' ', content.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)).ToLowerInvariant();
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(collapsed)));
    }
}
