using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.DeviceSync.Journal;

/// <summary>A run of one target's unanswered journal rows, with the local seq that precedes it.</summary>
public sealed record PendingBatch(SyncTarget Target, long PreviousLocalSeq, IReadOnlyList<Mutation> Mutations)
{
    public long FirstSeq => Mutations[0].LocalSeq;

    public long LastSeq => Mutations[^1].LocalSeq;
}
