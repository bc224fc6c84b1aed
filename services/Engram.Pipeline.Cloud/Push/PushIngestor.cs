using Engram.Pipeline.Cloud.Storage;
using Engram.Pipeline.Contracts;
using Microsoft.Extensions.Options;

namespace Engram.Pipeline.Cloud.Push;

/// <summary>
/// Appends a device's batch to a target's cloud log in one transaction of the <see cref="ICloudStore"/>:
/// <list type="bullet">
/// <item>the device's high-water mark is locked first, which serialises that device's batches and
/// makes duplicates and early batches decidable;</item>
/// <item>mutations at or below the mark are answered as before (or as a conflict if their content
/// changed); fresh ones get the target's next seqs; invalid ones are rejected and the mark moves past them.</item>
/// </list>
/// </summary>
public sealed class PushIngestor(ICloudStore store, IOptions<IngestOptions> options, TimeProvider clock)
{
    private readonly BatchValidator _validator = new(options.Value);

    public async Task<PushOutcome> IngestAsync(PushMutations batch, CancellationToken cancellationToken)
    {
        if (_validator.CheckBatch(batch) is var (reason, detail))
        {
            return PushOutcome.Refuse(batch, reason, detail);
        }

        await using var transaction = await store.BeginPushAsync(batch.TargetKey, batch.DeviceId, cancellationToken);
        var highWaterMark = transaction.HighWaterMark;
        if (batch.PreviousLocalSeq > highWaterMark)
        {
            // An earlier batch of this device has not committed yet (or was lost): accepting this one
            // would reorder the device's log. The device sends it again after its predecessor.
            return PushOutcome.Refuse(batch, RejectionReasons.OutOfOrder,
                $"previousLocalSeq {batch.PreviousLocalSeq} is ahead of the last local seq the cloud has, {highWaterMark}",
                highWaterMark);
        }

        var plan = Plan(batch, highWaterMark);
        var mappings = new List<SeqMapping>();
        var rejected = new List<MutationRejection>(plan.Rejected);
        if (plan.Duplicates.Count > 0)
        {
            var answers = await transaction.FindAnswersAsync(plan.Duplicates, cancellationToken);
            foreach (var answer in answers)
            {
                if (ToMapping(answer) is { } mapping)
                {
                    mappings.Add(mapping);
                }
                else
                {
                    rejected.Add(ToRejection(answer));
                }
            }
        }

        var keptRejections = plan.Rejected.Where(r => r.Reason != RejectionReasons.NonIncreasingLocalSeq).ToList();
        var (fresh, head) = await transaction.AppendAsync(plan.Fresh, keptRejections, plan.NewHighWaterMark,
            clock.GetUtcNow(), cancellationToken);
        await transaction.CommitAsync(cancellationToken);

        mappings.AddRange(fresh);
        mappings.Sort((a, b) => a.LocalSeq.CompareTo(b.LocalSeq));
        rejected.Sort((a, b) => a.LocalSeq.CompareTo(b.LocalSeq));
        var reply = new PushAccepted
        {
            TargetKey = batch.TargetKey,
            DeviceId = batch.DeviceId,
            Mappings = mappings,
            Rejected = rejected,
            Head = head,
        };
        return new PushOutcome.Accepted(reply, plan.Fresh.Count);
    }

    private sealed record BatchPlan(
        List<Mutation> Fresh, List<(Mutation Mutation, bool Valid)> Duplicates, List<MutationRejection> Rejected, long NewHighWaterMark);

    /// <summary>Sorts each mutation into fresh, duplicate (at or below the mark) or rejected.</summary>
    private BatchPlan Plan(PushMutations batch, long highWaterMark)
    {
        var fresh = new List<Mutation>();
        var duplicates = new List<(Mutation, bool)>();
        var rejected = new List<MutationRejection>();
        var previous = batch.PreviousLocalSeq;
        var newMark = highWaterMark;
        foreach (var mutation in batch.Mutations)
        {
            var problem = _validator.CheckMutation(mutation, previous);
            if (problem?.Reason == RejectionReasons.NonIncreasingLocalSeq)
            {
                // Its seq may belong to another mutation of this device: answer, but record nothing.
                rejected.Add(Rejection(mutation.LocalSeq, problem.Value));
                continue;
            }
            previous = mutation.LocalSeq;
            if (mutation.LocalSeq <= highWaterMark)
            {
                duplicates.Add((mutation, problem is null));
                continue;
            }
            newMark = mutation.LocalSeq;
            if (problem is { } p)
            {
                rejected.Add(Rejection(mutation.LocalSeq, p));
            }
            else
            {
                fresh.Add(mutation);
            }
        }
        return new BatchPlan(fresh, duplicates, rejected, newMark);
    }

    private static MutationRejection Rejection(long localSeq, (string Reason, string Detail) problem) =>
        new() { LocalSeq = localSeq, Reason = problem.Reason, Detail = problem.Detail };

    private static SeqMapping? ToMapping(StoredAnswer answer) =>
        answer is { CloudSeq: { } cloudSeq, SameContent: true }
            ? new SeqMapping { LocalSeq = answer.LocalSeq, CloudSeq = cloudSeq }
            : null;

    /// <summary>
    /// A duplicate whose stored row differs, or that the cloud never saw although it is at or below the
    /// mark, means the device database was reset or cloned under the same id: a conflict.
    /// </summary>
    private static MutationRejection ToRejection(StoredAnswer answer) => answer switch
    {
        { CloudSeq: { } cloudSeq } => Rejection(answer.LocalSeq, (RejectionReasons.Conflict,
            $"local seq {answer.LocalSeq} was accepted before as cloud seq {cloudSeq} with other content; " +
            "was this device database reset or cloned under the same device id?")),
        { Reason: { } reason } => Rejection(answer.LocalSeq, (reason, answer.Detail ?? "")),
        _ => Rejection(answer.LocalSeq, (RejectionReasons.Conflict,
            $"local seq {answer.LocalSeq} is at or below this device's high-water mark but was never pushed; " +
            "was this device database reset or cloned under the same device id?")),
    };
}
