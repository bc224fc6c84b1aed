namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>Another device's mutation, as a page of the cloud log brings it. Project = the target (an Engram project).</summary>
public sealed record PulledMutation(string Project, long CloudSeq, string Entity, string Op, string EntityKey, string Payload)
{
    /// <summary>
    /// The entity's sync id: the entity key, which the payload's <paramref name="payloadSyncId"/> must match when it has
    /// one; null when they differ or the key is blank.
    /// </summary>
    internal string? SyncId(string? payloadSyncId)
    {
        var key = EntityKey.Trim();
        var syncId = (payloadSyncId ?? "").Trim();
        return key.Length > 0 && (syncId.Length == 0 || syncId == key) ? key : null;
    }
}

/// <summary>What became of a pulled mutation.</summary>
public enum ApplyOutcome
{
    /// <summary>Engram's tables now hold it.</summary>
    Applied,

    /// <summary>Upstream's rules set it aside (a delete placed after it, a stale prompt): nothing to retry.</summary>
    Skipped,

    /// <summary>Its parent is not here yet: it waits in <c>sync_apply_deferred</c>.</summary>
    Deferred,

    /// <summary>It can never apply: recorded as dead in <c>sync_apply_deferred</c>.</summary>
    Dead,
}

/// <summary>The outcome of one pulled mutation, with why when it did not apply.</summary>
public sealed record ApplyResult(ApplyOutcome Outcome, string? Reason = null)
{
    internal static readonly ApplyResult Success = new(ApplyOutcome.Applied);

    /// <summary>The <c>reason_code</c> a deferred or dead row gets, in upstream's vocabulary where it has one.</summary>
    internal string ReasonCode { get; private init; } = "";

    internal static ApplyResult Skip(string reason) => new(ApplyOutcome.Skipped, reason);

    internal static ApplyResult Defer(string reasonCode, string reason) => new(ApplyOutcome.Deferred, reason) { ReasonCode = reasonCode };

    internal static ApplyResult Kill(string reasonCode, string reason) => new(ApplyOutcome.Dead, reason) { ReasonCode = reasonCode };
}

/// <summary>Reason codes of <c>sync_apply_deferred</c>: upstream's own first, then the pipeline's for what upstream halts on.</summary>
internal static class ReasonCodes
{
    public const string ParentSessionMissing = "pulled_parent_session_missing";
    public const string RelationOuterProject = "relation_outer_project_authoritative";
    public const string SessionIdentity = "sync_session_identity_invalid";
    public const string ObservationIdentity = "sync_observation_identity_invalid";
    public const string PromptIdentity = "sync_prompt_identity_invalid";
    public const string Undecodable = "pulled_payload_undecodable";
    public const string UnknownEntity = "pulled_entity_unknown";
    public const string UnknownOp = "pulled_op_unknown";
    public const string OwnershipMode = "pulled_session_ownership_mode_invalid";
    public const string Directory = "pulled_session_directory_invalid";
    public const string SessionInUse = "pulled_session_has_observations";
    public const string RelationInvalid = "pulled_relation_invalid";
    public const string Constraint = "pulled_constraint_refused";
}
