using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>
/// Applies other devices' pulled mutations into Engram's own tables (sessions, observations, user_prompts,
/// memory_relations) with upstream Engram's apply rules, inside the caller's transaction. Each mutation applies
/// whole or not at all; bad data never throws: it comes back <see cref="ApplyOutcome.Dead"/> and is recorded in
/// <c>sync_apply_deferred</c>. Only database failures (<see cref="SqliteException"/>) propagate, and then the caller
/// rolls its transaction back.
/// </summary>
/// <param name="transaction">The caller's write transaction; each mutation applies in a savepoint of it.</param>
/// <param name="clock">For the times upstream stamps when a payload has none.</param>
/// <param name="ownEditIsLater">
/// Rule 7 for replays: whether this device's own edit of an entity (entity, key) is unplaced or placed after a cloud seq;
/// a deferred mutation it supersedes is not applied when its parent arrives.
/// </param>
public sealed class EngramApplier(SqliteTransaction transaction, TimeProvider clock, Func<string, string, long, bool>? ownEditIsLater = null)
    : IDisposable
{
    private const string Savepoint = "pulled_mutation";
    private const int SqliteConstraint = 19;
    private const int MaxReplayFailures = 5;

    /// <summary>
    /// How far the log may run past a deferred row, in cloud seqs, before the row is dead. A parent comes after its
    /// child in the log only when one device wrote both (Engram journals a session's upsert when the session ends, and a
    /// device refers only to what it wrote or pulled); so on every device that defers a row, whether its parent comes
    /// within the horizon depends on the log alone, and every device ends the row alike. A constant, not a setting:
    /// devices with different horizons would diverge.
    /// </summary>
    public const long DeferralHorizon = 100_000;

    private readonly Statements _sql = new(transaction);

    public ApplyResult Apply(PulledMutation mutation)
    {
        var result = ApplyWhole(mutation);
        if (result.Outcome is ApplyOutcome.Deferred or ApplyOutcome.Dead)
        {
            new Deferral(_sql, clock).Record(mutation, result);
        }
        return result;
    }

    /// <summary>
    /// Retries the project's deferred rows whose parents now exist, oldest cloud seq first, until none is ready (one row
    /// may be the parent of the next) or <paramref name="limit"/> were tried; returns how many applied. Each row's
    /// <c>pipeline_applied</c> outcome follows what became of it.
    /// </summary>
    public int ReplayDeferred(string project, int limit)
    {
        var deferral = new Deferral(_sql, clock);
        var (applied, tried, progress) = (0, 0, true);
        while (progress && tried < limit)
        {
            progress = false;
            foreach (var row in deferral.Waiting(project, limit - tried))
            {
                tried++;
                var outcome = ReplayOne(deferral, project, row);
                applied += outcome == "applied" ? 1 : 0;
                progress |= outcome is not null;
            }
        }
        return applied;
    }

    /// <summary>The lowest cloud seq among the project's rows waiting for a parent, or null when none waits.</summary>
    public long? OldestDeferred(string project) => new Deferral(_sql, clock).OldestWaiting(project);

    /// <summary>
    /// Before the log's row at <paramref name="cloudSeq"/> is examined: the project's rows that have waited for a parent
    /// more than <see cref="DeferralHorizon"/> seqs end as dead, alike on every device; returns how many.
    /// </summary>
    public int ExpireDeferred(string project, long cloudSeq) => new Deferral(_sql, clock).Expire(project, cloudSeq);

    /// <summary>Replays one deferred row; returns the outcome it was resolved with, or null when it stays deferred.</summary>
    private string? ReplayOne(Deferral deferral, string project, DeferredRow row)
    {
        var outcome = deferral.NewerApplied(project, row) ? "skipped"
            : ownEditIsLater?.Invoke(row.Entity, row.EntityKey, row.RemoteSeq) == true ? "superseded"
            : ApplyWhole(row.ToMutation(project)) switch
            {
                { Outcome: ApplyOutcome.Applied } => "applied",
                { Outcome: ApplyOutcome.Skipped } => "skipped",
                var failed => deferral.Fail(project, row, failed, MaxReplayFailures) ? "dead" : null,
            };
        if (outcome is "applied" or "skipped" or "superseded")
        {
            deferral.Resolve(project, row, outcome);
        }
        return outcome;
    }

    /// <summary>
    /// Rule 7 kept this device's own later edit instead of <paramref name="mutation"/>. A hard delete of an observation
    /// still orphans the relations placed before it, as on the devices that applied it: those here now, and, through its
    /// tombstone's floor, those that come later.
    /// </summary>
    public void Superseded(PulledMutation mutation)
    {
        if (mutation is { Entity: EngramRules.Observation, Op: EngramRules.Delete }
            && PayloadJson.TryRead<ObservationPayload>(mutation.Payload, out var payload, out _) && payload.HardDelete == true)
        {
            var syncId = mutation.EntityKey.Trim();
            new RelationApply(_sql).OrphanTouching(mutation.Project, syncId, mutation.CloudSeq);
            new Tombstones(_sql).RecordSupersededHardDelete(EngramRules.TargetKey(mutation.Project), syncId, payload.SessionId, payload.Project,
                EngramRules.IsBlank(payload.DeletedAt) ? EngramTime.Go(clock.GetUtcNow()) : payload.DeletedAt, mutation.CloudSeq);
        }
    }

    /// <summary>
    /// This device's own delete of (entity, entityKey) was placed by the cloud at cloudSeq: raise the tombstone floor for
    /// the target, so that other devices' upserts placed before the delete stay out and those placed after it apply.
    /// </summary>
    public void RecordOwnDeletePlaced(string project, string entity, string entityKey, long cloudSeq)
    {
        // Only sessions and observations have upstream's seq-gated tombstones; prompts keep their own, by time.
        if (entity is EngramRules.Session or EngramRules.Observation)
        {
            new Tombstones(_sql).RaiseFloor(EngramRules.TargetKey(project), entity, entityKey, cloudSeq);
        }
    }

    public void Dispose() => _sql.Dispose();

    /// <summary>Applies in a savepoint, undone unless the mutation applied or was skipped, so nothing half-done remains.</summary>
    private ApplyResult ApplyWhole(PulledMutation mutation)
    {
        transaction.Save(Savepoint);
        ApplyResult result;
        try
        {
            result = Route(mutation);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == SqliteConstraint)
        {
            // A constraint refusing the row (a foreign key, an inbox pair) is the data's fault, not the database's.
            result = ApplyResult.Kill(ReasonCodes.Constraint, e.Message);
        }
        if (result.Outcome is ApplyOutcome.Deferred or ApplyOutcome.Dead)
        {
            transaction.Rollback(Savepoint);
        }
        transaction.Release(Savepoint);
        return result;
    }

    private ApplyResult Route(PulledMutation mutation) => mutation.Entity switch
    {
        EngramRules.Session when IsUpsertOrDelete(mutation.Op) => new SessionApply(_sql, clock).Apply(mutation),
        EngramRules.Observation when IsUpsertOrDelete(mutation.Op) => new ObservationApply(_sql, clock).Apply(mutation),
        EngramRules.Prompt when IsUpsertOrDelete(mutation.Op) => new PromptApply(_sql, clock).Apply(mutation),
        EngramRules.Relation when mutation.Op == EngramRules.Upsert => new RelationApply(_sql).Apply(mutation),
        EngramRules.Session or EngramRules.Observation or EngramRules.Prompt or EngramRules.Relation =>
            ApplyResult.Kill(ReasonCodes.UnknownOp, $"{mutation.Entity} has no op '{mutation.Op}'"),
        _ => ApplyResult.Kill(ReasonCodes.UnknownEntity, $"unknown entity '{mutation.Entity}'"),
    };

    private static bool IsUpsertOrDelete(string op) => op is EngramRules.Upsert or EngramRules.Delete;
}
