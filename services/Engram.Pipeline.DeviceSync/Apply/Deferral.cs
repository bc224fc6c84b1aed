using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>A row of <c>sync_apply_deferred</c> the pipeline wrote and may replay.</summary>
internal sealed record DeferredRow(string SyncId, string Entity, string EntityKey, string Op, string Payload, long RemoteSeq, long RetryCount)
{
    public PulledMutation ToMutation(string project) => new(project, RemoteSeq, Entity, Op, EntityKey, Payload);
}

/// <summary>
/// Deferred and dead mutations in upstream's <c>sync_apply_deferred</c> (target <c>cloud</c>, so that
/// <c>engram conflicts deferred</c> and its status count them), and their outcome in <c>pipeline_applied</c>.
/// The pipeline's rows are keyed <c>pipeline-&lt;entity&gt;-&lt;sha256&gt;</c>: a redelivered mutation lands on its row,
/// two mutations of one key do not share one, and rows of upstream's own cloud sync are never replayed here.
/// </summary>
internal sealed class Deferral(Statements sql, TimeProvider clock)
{
    private const string OwnRows = "sync_id LIKE 'pipeline-%'";

    public void Record(PulledMutation mutation, ApplyResult result)
    {
        var dead = result.Outcome == ApplyOutcome.Dead;
        sql.Execute("""
            INSERT INTO sync_apply_deferred (sync_id, entity, payload, target_key, remote_seq, entity_key, op, reason_code, project,
                scope_class, apply_status, retry_count, last_error, first_seen_at)
            VALUES ($sync_id, $entity, $payload, 'cloud', $seq, $key, $op, $reason_code, $project,
                $scope_class, $status, 0, $last_error, $now)
            ON CONFLICT (sync_id) DO UPDATE SET
                apply_status = excluded.apply_status, reason_code = excluded.reason_code, last_error = excluded.last_error,
                last_attempted_at = excluded.first_seen_at
            WHERE sync_apply_deferred.apply_status <> 'dead' OR excluded.apply_status = 'dead'
            """,
            ("$sync_id", RowKey(mutation)), ("$entity", mutation.Entity), ("$payload", mutation.Payload), ("$seq", mutation.CloudSeq),
            ("$key", mutation.EntityKey), ("$op", mutation.Op), ("$reason_code", result.ReasonCode), ("$project", mutation.Project),
            ("$scope_class", EngramRules.IsBlank(mutation.Project) ? "target_scoped" : "scoped"),
            ("$status", dead ? "dead" : "deferred"), ("$last_error", dead ? result.Reason : null), ("$now", Now));
    }

    /// <summary>
    /// The project's deferred rows whose parents are here now (the session of an observation or prompt, both ends of a
    /// relation, the observation of a soft delete or the end of its wait), oldest cloud seq
    /// first: a row is tried only when it may apply, so its failures count only real refusals.
    /// </summary>
    public IReadOnlyList<DeferredRow> Waiting(string project, int limit)
    {
        using var reader = sql.Read($"""
            SELECT d.sync_id, d.entity, d.entity_key, d.op, d.payload, d.remote_seq, d.retry_count FROM sync_apply_deferred d
            WHERE {Ready}
            ORDER BY d.remote_seq, d.sync_id LIMIT $limit
            """, ("$project", project), ("$limit", limit));
        var rows = new List<DeferredRow>();
        while (reader.Read())
        {
            rows.Add(new DeferredRow(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                reader.GetString(4), reader.GetInt64(5), reader.GetInt64(6)));
        }
        return rows;
    }

    /// <summary>The project's (<c>$project</c>) deferred rows <c>d</c> whose parents are here now.</summary>
    internal const string Ready = $"{Mine} AND {ParentsHere}";

    /// <summary>The project's (<c>$project</c>) rows <c>d</c> the pipeline deferred, still waiting.</summary>
    private const string Mine = $"d.target_key = 'cloud' AND d.project = $project AND d.apply_status = 'deferred' AND d.{OwnRows}";

    /// <summary>
    /// Whether the parents of row <c>d</c> are here: the session of an observation or prompt, both ends of a relation,
    /// the observation of a soft delete or the end of its wait.
    /// </summary>
    private const string ParentsHere = """
              CASE
                  WHEN d.entity = 'observation' AND d.op = 'delete' THEN
                      EXISTS (SELECT 1 FROM observations WHERE sync_id = d.entity_key)
                      OR NOT EXISTS (SELECT 1 FROM sync_apply_deferred u WHERE u.target_key = 'cloud' AND u.project = d.project
                                     AND u.entity = 'observation' AND u.entity_key = d.entity_key AND u.op = 'upsert' AND u.apply_status = 'deferred')
                  WHEN d.entity IN ('observation', 'prompt') THEN EXISTS (SELECT 1 FROM sessions WHERE id = json_extract(d.payload, '$.session_id'))
                  WHEN d.entity = 'relation' THEN
                      EXISTS (SELECT 1 FROM observations WHERE sync_id = json_extract(d.payload, '$.source_id'))
                      AND EXISTS (SELECT 1 FROM observations WHERE sync_id = json_extract(d.payload, '$.target_id'))
                  ELSE 1 END
        """;

    /// <summary>The lowest cloud seq among the project's waiting rows, or null when none waits.</summary>
    public long? OldestWaiting(string project) =>
        sql.Scalar($"SELECT MIN(d.remote_seq) FROM sync_apply_deferred d WHERE {Mine}", ("$project", project)) as long?;

    /// <summary>
    /// Before the log's row at <paramref name="cloudSeq"/> is examined: the rows that have waited for a parent more than
    /// <see cref="EngramApplier.DeferralHorizon"/> seqs end as dead, as on every other device. A row whose parents are here waits for its
    /// replay instead. Returns how many died.
    /// </summary>
    public int Expire(string project, long cloudSeq)
    {
        var expired = $"{Mine} AND d.remote_seq < $before AND NOT ({ParentsHere})";
        (string, object?)[] parameters = [("$project", project), ("$before", cloudSeq - EngramApplier.DeferralHorizon)];
        sql.Execute($"""
            UPDATE pipeline_applied SET outcome = 'dead', applied_at = $now
            WHERE target_key = $target AND cloud_seq IN (SELECT d.remote_seq FROM sync_apply_deferred d WHERE {expired})
            """, [.. parameters, ("$target", EngramRules.TargetKey(project)), ("$now", EngramTime.Iso(clock.GetUtcNow()))]);
        return sql.Execute($"""
            UPDATE sync_apply_deferred AS d SET apply_status = 'dead', last_attempted_at = $now,
                last_error = 'its parent did not come within {EngramApplier.DeferralHorizon} cloud seqs'
            WHERE {expired}
            """, [.. parameters, ("$now", Now)]);
    }

    /// <summary>Whether an upsert of the observation waits here for its session.</summary>
    public bool HasWaitingUpsert(string project, string syncId) =>
        sql.Exists($"""
            SELECT EXISTS (SELECT 1 FROM sync_apply_deferred
                WHERE target_key = 'cloud' AND project = $project AND entity = 'observation' AND entity_key = $key AND op = 'upsert'
                  AND apply_status = 'deferred' AND {OwnRows})
            """, ("$project", project), ("$key", syncId));

    /// <summary>Whether a later mutation of the same key has applied since: the deferred one must not overwrite it.</summary>
    public bool NewerApplied(string project, DeferredRow row) =>
        sql.Exists("""
            SELECT EXISTS (SELECT 1 FROM pipeline_applied
                WHERE target_key = $target AND entity = $entity AND entity_key = $key AND cloud_seq > $seq AND outcome = 'applied')
            """, ("$target", EngramRules.TargetKey(project)), ("$entity", row.Entity), ("$key", row.EntityKey), ("$seq", row.RemoteSeq));

    /// <summary>The row is done with: gone from the queue, its outcome recorded.</summary>
    public void Resolve(string project, DeferredRow row, string outcome)
    {
        sql.Execute("DELETE FROM sync_apply_deferred WHERE sync_id = $sync_id", ("$sync_id", row.SyncId));
        SetOutcome(project, row.RemoteSeq, outcome);
    }

    /// <summary>A replay that did not apply: counted, and dead at the fifth failure or when it can never apply; returns whether it is dead.</summary>
    public bool Fail(string project, DeferredRow row, ApplyResult result, int maxFailures)
    {
        var failures = row.RetryCount + 1;
        var dead = result.Outcome == ApplyOutcome.Dead || failures >= maxFailures;
        sql.Execute("""
            UPDATE sync_apply_deferred SET retry_count = $retry_count, apply_status = $status, last_error = $last_error,
                last_attempted_at = $now
            WHERE sync_id = $sync_id
            """, ("$retry_count", failures), ("$status", dead ? "dead" : "deferred"), ("$last_error", result.Reason),
            ("$now", Now), ("$sync_id", row.SyncId));
        if (dead)
        {
            SetOutcome(project, row.RemoteSeq, "dead");
        }
        return dead;
    }

    /// <summary>Upstream's rule: a pulled observation delete cancels the deferred upserts of that observation.</summary>
    public void CancelObservationUpserts(string entityKey)
    {
        sql.Execute($"""
            UPDATE pipeline_applied SET outcome = 'skipped'
            WHERE (target_key, cloud_seq) IN (
                SELECT 'cloud:' || project, remote_seq FROM sync_apply_deferred
                WHERE entity = 'observation' AND entity_key = $key AND target_key = 'cloud' AND op = 'upsert'
                    AND apply_status = 'deferred' AND {OwnRows})
            """, ("$key", entityKey));
        sql.Execute("""
            DELETE FROM sync_apply_deferred
            WHERE entity = 'observation' AND entity_key = $key AND target_key = 'cloud' AND op = 'upsert' AND apply_status = 'deferred'
            """, ("$key", entityKey));
    }

    private string Now => EngramTime.Sqlite(clock.GetUtcNow());

    /// <summary>The mutation's outcome, and when it came to be (an applied replay is visible from then on).</summary>
    private void SetOutcome(string project, long cloudSeq, string outcome) =>
        sql.Execute("UPDATE pipeline_applied SET outcome = $outcome, applied_at = $now WHERE target_key = $target AND cloud_seq = $seq",
            ("$outcome", outcome), ("$now", EngramTime.Iso(clock.GetUtcNow())), ("$target", EngramRules.TargetKey(project)), ("$seq", cloudSeq));

    /// <summary>Length-prefixed fields, as upstream keys its dead letters, plus the cloud seq, so no field can forge a collision.</summary>
    private static string RowKey(PulledMutation mutation)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        string[] fields = [EngramRules.TargetKey(mutation.Project), mutation.Entity, mutation.EntityKey, mutation.Op, mutation.Payload,
            mutation.CloudSeq.ToString(CultureInfo.InvariantCulture)];
        foreach (var field in fields)
        {
            var bytes = Encoding.UTF8.GetBytes(field);
            hash.AppendData(Encoding.UTF8.GetBytes(bytes.Length.ToString(CultureInfo.InvariantCulture) + ":"));
            hash.AppendData(bytes);
        }
        return $"pipeline-{mutation.Entity}-{Convert.ToHexStringLower(hash.GetHashAndReset())}";
    }
}
