namespace Engram.Pipeline.Contracts;

/// <summary>
/// The cloud refused a whole <see cref="PushMutations"/> batch and wrote nothing:
/// for example a batch that arrived before its predecessor, or one over the size limits.
/// </summary>
public sealed record PushRejected
{
    /// <summary>The target of the batch.</summary>
    public required string TargetKey { get; init; }

    /// <summary>The device that pushed the batch.</summary>
    public required string DeviceId { get; init; }

    /// <summary>A reason code such as <c>out-of-order</c> or <c>batch-too-large</c>.</summary>
    public required string Reason { get; init; }

    /// <summary>Human-readable detail.</summary>
    public required string Detail { get; init; }

    /// <summary>
    /// For <c>out-of-order</c>: the device's high-water mark in the cloud, the
    /// <see cref="PushMutations.PreviousLocalSeq"/> the cloud expects next.
    /// </summary>
    public long? ExpectedPreviousLocalSeq { get; init; }
}
