using Engram.Pipeline.Cloud.Push;
using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Contracts;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Cloud.Pull;

/// <summary>
/// Serves pages of a target's log. Seqs are gap-free and become visible in order, so the rows after
/// <c>afterSeq</c> form a run afterSeq+1, afterSeq+2, …; the page says it examined every seq through
/// the last row of that run (<c>throughSeq</c>), which is what lets a device move its cursor safely.
/// </summary>
public sealed class PullReader(ICloudStore store, IOptions<IngestOptions> options)
{
    public async Task<MutationsPage> ReadPageAsync(PullMutations request, CancellationToken cancellationToken)
    {
        if (BatchValidator.KeyProblem(request.TargetKey) is { } targetProblem)
        {
            throw new ArgumentException($"PullMutations.targetKey {targetProblem}", nameof(request));
        }
        if (BatchValidator.KeyProblem(request.DeviceId) is { } deviceProblem)
        {
            throw new ArgumentException($"PullMutations.deviceId {deviceProblem}", nameof(request));
        }
        if (request.AfterSeq < 0)
        {
            throw new ArgumentException($"PullMutations.afterSeq {request.AfterSeq} is negative", nameof(request));
        }

        var limit = Math.Clamp(request.Limit, 1, options.Value.MaxPageRows);
        var rows = await store.ReadAfterAsync(request, limit, cancellationToken);
        // Read after the rows: the head only grows, so it is never below throughSeq.
        var head = await store.HeadAsync(request.TargetKey, cancellationToken);

        var contiguous = rows.TakeWhile((row, i) => row.CloudSeq == request.AfterSeq + i + 1).ToList();
        return new MutationsPage
        {
            TargetKey = request.TargetKey,
            Mutations = contiguous,
            ThroughSeq = contiguous.Count == 0 ? request.AfterSeq : contiguous[^1].CloudSeq,
            Head = head,
        };
    }
}
