namespace Engram.Pipeline.Contracts;

/// <summary>Published (fan-out) after the cloud commits new rows to a target's log.</summary>
public sealed record TargetAdvanced
{
    /// <summary>The target whose log grew.</summary>
    public required string TargetKey { get; init; }

    /// <summary>The target's new head.</summary>
    public required long Head { get; init; }
}
