namespace Engram.Pipeline.Contracts;

/// <summary>The reason codes the cloud answers with; devices and operators match on them.</summary>
public static class RejectionReasons
{
    /// <summary>Whole batch: a key is missing, too long or malformed, or the mutation list is absent.</summary>
    public const string InvalidBatch = "invalid-batch";

    /// <summary>Whole batch: it holds no mutations.</summary>
    public const string EmptyBatch = "empty-batch";

    /// <summary>Whole batch: more mutations or payload bytes than the cloud takes in one batch.</summary>
    public const string BatchTooLarge = "batch-too-large";

    /// <summary>
    /// Whole batch (or pull): the RabbitMQ user that sent it is not the device it names, or that device
    /// is not granted the target.
    /// </summary>
    public const string NotAuthorised = "not-authorised";

    /// <summary>Whole batch: its previousLocalSeq is ahead of what the cloud has; resend from <see cref="PushRejected.ExpectedPreviousLocalSeq"/>.</summary>
    public const string OutOfOrder = "out-of-order";

    /// <summary>One mutation: the entity is not session, observation, prompt or relation.</summary>
    public const string UnknownEntity = "unknown-entity";

    /// <summary>One mutation: the op is not upsert or delete.</summary>
    public const string UnknownOp = "unknown-op";

    /// <summary>One mutation: the entity key is empty, too long or malformed.</summary>
    public const string InvalidEntityKey = "invalid-entity-key";

    /// <summary>One mutation: the payload is not JSON the cloud can store.</summary>
    public const string PayloadNotJson = "payload-not-json";

    /// <summary>One mutation: the payload is over the size limit.</summary>
    public const string PayloadTooLarge = "payload-too-large";

    /// <summary>One mutation: its local seq does not follow the one before it in the batch.</summary>
    public const string NonIncreasingLocalSeq = "non-increasing-local-seq";

    /// <summary>One mutation: the cloud holds a different mutation under the same device and local seq.</summary>
    public const string Conflict = "conflict";
}
