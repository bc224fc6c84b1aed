using Engram.Pipeline.Contracts;

namespace Engram.Pipeline.Cloud.Push;

/// <summary>What ingesting one batch came to: a reply for the pusher, and whether the log grew.</summary>
public abstract record PushOutcome
{
    private PushOutcome() { }

    /// <summary>The batch committed (or had committed before): answer with every mapping and rejection.</summary>
    public sealed record Accepted(PushAccepted Reply, int NewRows) : PushOutcome;

    /// <summary>The batch was refused whole and nothing was written.</summary>
    public sealed record Refused(PushRejected Reply) : PushOutcome;

    /// <summary>Refuses <paramref name="batch"/> whole with a reason code.</summary>
    public static Refused Refuse(PushMutations batch, string reason, string detail, long? expectedPreviousLocalSeq = null) =>
        new(new PushRejected
        {
            TargetKey = batch.TargetKey ?? "",
            DeviceId = batch.DeviceId ?? "",
            Reason = reason,
            Detail = detail,
            ExpectedPreviousLocalSeq = expectedPreviousLocalSeq,
        });
}
