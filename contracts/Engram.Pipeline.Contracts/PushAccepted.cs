namespace Engram.Pipeline.Contracts;

/// <summary>
/// The cloud's answer to a <see cref="PushMutations"/> it has committed: the cloud seq of every
/// accepted mutation and the reason for every rejected one. Answering a duplicate batch again
/// yields the same mappings.
/// </summary>
public sealed record PushAccepted
{
    /// <summary>The target of the batch.</summary>
    public required string TargetKey { get; init; }

    /// <summary>The device that pushed the batch.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The cloud seq assigned to each accepted mutation.</summary>
    public required IReadOnlyList<SeqMapping> Mappings { get; init; }

    /// <summary>The mutations the cloud refused; the device's high-water mark moved past them.</summary>
    public required IReadOnlyList<MutationRejection> Rejected { get; init; }

    /// <summary>The target's head (its highest cloud seq) when the batch committed.</summary>
    public required long Head { get; init; }
}

/// <summary>Where a device's mutation sits in the target's cloud log.</summary>
public sealed record SeqMapping
{
    /// <summary>The device's journal seq.</summary>
    public required long LocalSeq { get; init; }

    /// <summary>The cloud seq the mutation was given.</summary>
    public required long CloudSeq { get; init; }
}

/// <summary>A single mutation the cloud refused, with a machine-readable reason.</summary>
public sealed record MutationRejection
{
    /// <summary>The device's journal seq.</summary>
    public required long LocalSeq { get; init; }

    /// <summary>A reason code such as <c>unknown-entity</c> or <c>payload-too-large</c>.</summary>
    public required string Reason { get; init; }

    /// <summary>Human-readable detail.</summary>
    public required string Detail { get; init; }
}
