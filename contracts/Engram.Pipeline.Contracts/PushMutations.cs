namespace Engram.Pipeline.Contracts;

/// <summary>
/// A device asks the cloud to append a batch of its journaled mutations to a target's log.
/// Sent to the <c>engram-push</c> queue with the device's reply queue as ResponseAddress;
/// answered with <see cref="PushAccepted"/> or <see cref="PushRejected"/>.
/// </summary>
public sealed record PushMutations
{
    /// <summary>The log the mutations belong to.</summary>
    public required string TargetKey { get; init; }

    /// <summary>The device database that journaled the mutations.</summary>
    public required string DeviceId { get; init; }

    /// <summary>
    /// The local seq of this device's mutation that precedes the batch for this target, 0 for the first.
    /// The cloud accepts the batch only once it has accepted or rejected everything up to this seq.
    /// </summary>
    public required long PreviousLocalSeq { get; init; }

    /// <summary>The mutations, in increasing local seq.</summary>
    public required IReadOnlyList<Mutation> Mutations { get; init; }
}

/// <summary>One journaled change of one entity, as the device recorded it.</summary>
public sealed record Mutation
{
    /// <summary>The device's journal seq (<c>sync_mutations.seq</c>).</summary>
    public required long LocalSeq { get; init; }

    /// <summary><c>session</c>, <c>observation</c>, <c>prompt</c> or <c>relation</c>.</summary>
    public required string Entity { get; init; }

    /// <summary><c>upsert</c> or <c>delete</c>.</summary>
    public required string Op { get; init; }

    /// <summary>The entity's stable id (its sync_id).</summary>
    public required string EntityKey { get; init; }

    /// <summary>The entity as JSON text; a delete is hard when it says <c>"hard_delete": true</c>.</summary>
    public required string Payload { get; init; }

    /// <summary>When the device recorded the change.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
}
