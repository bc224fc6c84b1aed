using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.Cloud.Storage;

/// <summary>
/// Where the cloud log lives: PostgreSQL in production, a SQLite file for the embedded default.
/// Both give the same guarantees: per-target seqs 1..head assigned in the inserting transaction, and
/// a device's batches serialised by a lock on its high-water mark.
/// </summary>
public interface ICloudStore
{
    /// <summary>Opens a transaction holding the device's row locked (created on first contact).</summary>
    Task<IPushTransaction> BeginPushAsync(string targetKey, string deviceId, CancellationToken ct);

    /// <summary>
    /// Rows after <see cref="PullMutations.AfterSeq"/> in seq order, from one consistent snapshot. The
    /// requester's own rows come without payload.
    /// </summary>
    Task<IReadOnlyList<CloudMutation>> ReadAfterAsync(PullMutations request, int limit, CancellationToken ct);

    /// <summary>The target's head (0 for an unknown target).</summary>
    Task<long> HeadAsync(string targetKey, CancellationToken ct);

    /// <summary>Whether the operator granted the device the target (<c>cloud_device_grants</c>).</summary>
    Task<bool> IsGrantedAsync(string targetKey, string deviceId, CancellationToken ct);
}

/// <summary>One batch's transaction; disposing without <see cref="CommitAsync"/> rolls back.</summary>
public interface IPushTransaction : IAsyncDisposable
{
    /// <summary>The last local seq of this device the cloud has accepted or rejected.</summary>
    long HighWaterMark { get; }

    /// <summary>
    /// What the cloud answered before for mutations at or below the high-water mark. A mutation that
    /// is not <c>Valid</c> can only match a stored rejection (its payload may not even be JSON).
    /// </summary>
    Task<IReadOnlyList<StoredAnswer>> FindAnswersAsync(IReadOnlyList<(Mutation Mutation, bool Valid)> duplicates, CancellationToken ct);

    /// <summary>
    /// Gives <paramref name="fresh"/> the next seqs of the target in order, keeps the rejections and
    /// moves the high-water mark; returns the new mappings and the head.
    /// </summary>
    Task<(IReadOnlyList<SeqMapping> Mappings, long Head)> AppendAsync(IReadOnlyList<Mutation> fresh,
        IReadOnlyList<MutationRejection> rejections, long newHighWaterMark, DateTimeOffset now, CancellationToken ct);

    Task CommitAsync(CancellationToken ct);
}

/// <summary>
/// The stored answer for a duplicate: its cloud seq and whether the stored row has the same content,
/// or the stored rejection, or neither (the cloud never saw that seq).
/// </summary>
public sealed record StoredAnswer(long LocalSeq, long? CloudSeq, bool SameContent, string? Reason, string? Detail);
