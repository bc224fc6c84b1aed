namespace Engram.Pipeline.Contracts;

/// <summary>A device asks for a page of a target's cloud log; sent to <c>engram-pull</c>, answered with <see cref="MutationsPage"/>.</summary>
public sealed record PullMutations
{
    /// <summary>The target to read.</summary>
    public required string TargetKey { get; init; }

    /// <summary>The device asking.</summary>
    public required string DeviceId { get; init; }

    /// <summary>Return rows with a cloud seq above this one.</summary>
    public required long AfterSeq { get; init; }

    /// <summary>The most rows to return.</summary>
    public required int Limit { get; init; }
}
