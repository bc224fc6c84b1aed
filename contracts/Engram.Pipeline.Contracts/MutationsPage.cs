namespace Engram.Pipeline.Contracts;

/// <summary>A page of a target's cloud log, in cloud seq order.</summary>
public sealed record MutationsPage
{
    /// <summary>The target read.</summary>
    public required string TargetKey { get; init; }

    /// <summary>The rows after the requested seq, in cloud seq order.</summary>
    public required IReadOnlyList<CloudMutation> Mutations { get; init; }

    /// <summary>Every cloud seq up to and including this one was examined for the page.</summary>
    public required long ThroughSeq { get; init; }

    /// <summary>The target's head when the page was read.</summary>
    public required long Head { get; init; }
}

/// <summary>One row of a target's cloud log.</summary>
public sealed record CloudMutation
{
    /// <summary>The row's position in the target's log.</summary>
    public required long CloudSeq { get; init; }

    /// <summary>The device that pushed it.</summary>
    public required string DeviceId { get; init; }

    /// <summary>The pushing device's journal seq.</summary>
    public required long LocalSeq { get; init; }

    /// <summary><c>session</c>, <c>observation</c>, <c>prompt</c> or <c>relation</c>.</summary>
    public required string Entity { get; init; }

    /// <summary><c>upsert</c> or <c>delete</c>.</summary>
    public required string Op { get; init; }

    /// <summary>The entity's stable id.</summary>
    public required string EntityKey { get; init; }

    /// <summary>The entity as JSON text; may be empty for the requester's own rows.</summary>
    public required string Payload { get; init; }

    /// <summary>When the pushing device recorded the change.</summary>
    public required DateTimeOffset OccurredAt { get; init; }
}
