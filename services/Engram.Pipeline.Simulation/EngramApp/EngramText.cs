using System.Text;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>
/// Text shaped like what agents save in Engram: prose with code, paths, quotes, markup and some non-ASCII, so that
/// payloads exercise Go's escaping (<c>&lt; &gt; &amp;</c>, quotes, backslashes, newlines, control characters,
/// U+2028) and multi-byte characters at the 50,000-byte cut.
/// </summary>
internal sealed class EngramText(Random random)
{
    private static readonly string[] Words =
    [
        "the", "cursor", "moves", "after", "every", "acked", "batch", "and", "the", "device", "pulls", "again", "when",
        "session", "ends", "observation", "prompt", "relation", "journal", "pending", "superseded", "retry", "backoff",
        "sqlite", "wal", "checkpoint", "trigram", "index", "migration", "schema", "project", "enrolled", "cloud", "seq",
        "if (a < b && c > d)", "x >= 0", "a && b", "<div class=\"note\">", "</div>", "\"quoted\"", "'single'",
        "C:\\src\\engram", "/home/dev/src/engram/internal/store/store.go", "fn(x) => x * 2;", "{\"key\": [1, 2]}",
        "naïve", "café", "über", "日本語", "данные", "🚀", "✓", "—", "…", "Ω", "ß",
    ];

    private static readonly string[] Separators = [" ", " ", " ", " ", " ", " ", ", ", ". ", "\n", "\n\n", "\t", ": "];

    private static readonly int[] WordBytes = [.. Words.Select(Encoding.UTF8.GetByteCount)];
    private static readonly int[] SeparatorBytes = [.. Separators.Select(Encoding.UTF8.GetByteCount)];

    /// <summary>
    /// Content sizes in UTF-8 bytes after ENGRAM.md's mix of real observations: about 55% 150–900 B, 35% up to 4 KB,
    /// 7% up to 12 KB, 3% 40–50 KB; a quarter of the last are over the 50,000-byte limit, to be cut.
    /// </summary>
    public int ObservationBytes() => random.NextDouble() switch
    {
        < 0.55 => random.Next(150, 901),
        < 0.90 => random.Next(901, 4097),
        < 0.97 => random.Next(4097, 12_289),
        _ => random.Next(4) == 0 ? random.Next(50_001, 56_001) : random.Next(40_000, 50_001),
    };

    /// <summary>Text of at most <paramref name="bytes"/> UTF-8 bytes and at least that minus a few, not starting or ending in whitespace.</summary>
    public string Content(int bytes)
    {
        var text = new StringBuilder(bytes + 64);
        var length = 0;
        while (length < bytes)
        {
            var word = random.Next(Words.Length);
            text.Append(Words[word]);
            length += WordBytes[word];
            if (random.Next(400) == 0)
            {
                // Rare characters Go writes as \u0001, \b, \u2028.
                var rare = random.Next(3);
                text.Append(rare switch { 0 => "\u0001", 1 => "\b", _ => "\u2028" });
                length += rare == 2 ? 3 : 1;
            }
            var separator = random.Next(Separators.Length);
            text.Append(Separators[separator]);
            length += SeparatorBytes[separator];
        }
        return EngramRules.CutUtf8(text.ToString(), bytes).TrimEnd();
    }

    public string Title() =>
        $"{Pick("Fixed", "Decided", "Found", "Learned", "Changed", "Noted")} {Pick("cursor", "ack", "\"pull\" loop", "<b>retry</b>", "schema & index", "café sync")} {random.Next(10_000)}";

    public string Prompt() => Content(random.Next(40, 600));

    public string? Summary() => random.Next(5) == 0 ? null : Content(random.Next(60, 400));

    public string Pick(params string[] choices) => choices[random.Next(choices.Length)];
}
