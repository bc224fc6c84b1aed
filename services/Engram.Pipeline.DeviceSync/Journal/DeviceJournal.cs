using System.Text.Json;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.DeviceSync.Entities;
using Engram.Pipeline.DeviceSync.Storage;

namespace Engram.Pipeline.DeviceSync.Journal;

/// <summary>
/// The device's record API: each call journals its mutations and applies them to the entity store
/// in one SQLite transaction, so a crash keeps both or neither.
/// </summary>
public sealed class DeviceJournal(DeviceDatabase database, DeviceIdentity identity, Wakeup signal, TimeProvider clock)
{
    /// <summary>Records the mutations in order and returns their local seqs.</summary>
    public async Task<IReadOnlyList<long>> RecordAsync(IReadOnlyList<NewMutation> mutations, CancellationToken cancellationToken)
    {
        foreach (var mutation in mutations)
        {
            Check(mutation);
        }
        var seqs = new List<long>(mutations.Count);
        var occurredAt = DeviceDatabase.Timestamp(clock.GetUtcNow());
        await using (var connection = await database.OpenAsync(cancellationToken))
        {
            await using var transaction = connection.BeginTransaction();
            await using var insert = transaction.Command("""
                INSERT INTO sync_mutations (target_key, entity, entity_key, op, payload, source, project, occurred_at)
                VALUES ($target, $entity, $key, $op, $payload, 'local', $project, $at)
                RETURNING seq
                """, ("$target", identity.Target), ("$at", occurredAt));
            using var entities = new EntityWriter(transaction);
            foreach (var mutation in mutations)
            {
                insert.Bind(("$entity", mutation.Entity), ("$key", mutation.EntityKey), ("$op", mutation.Op), ("$payload", mutation.Payload),
                    ("$project", mutation.Project));
                var seq = (long)(await insert.ExecuteScalarAsync(cancellationToken))!;
                entities.Apply(identity.Target, mutation.Entity, mutation.EntityKey, mutation.Op, mutation.Payload,
                    cloudSeq: null, localSeq: seq, occurredAt);
                seqs.Add(seq);
            }
            await transaction.CommitAsync(cancellationToken);
        }
        signal.Notify();
        return seqs;
    }

    private static void Check(NewMutation mutation)
    {
        if (!WireNames.Entities.Contains(mutation.Entity))
        {
            throw new ArgumentException($"Unknown entity '{mutation.Entity}': expected one of {string.Join(", ", WireNames.Entities)}.", nameof(mutation));
        }
        if (!WireNames.Ops.Contains(mutation.Op))
        {
            throw new ArgumentException($"Unknown op '{mutation.Op}': expected one of {string.Join(", ", WireNames.Ops)}.", nameof(mutation));
        }
        if (string.IsNullOrWhiteSpace(mutation.EntityKey))
        {
            throw new ArgumentException("A mutation needs an entity key (its sync_id).", nameof(mutation));
        }
        ArgumentNullException.ThrowIfNull(mutation.Payload);
    }

    /// <summary>Upstream Engram marks a hard delete in the delete's payload.</summary>
    public static bool IsHardDelete(string payload)
    {
        try
        {
            using var document = JsonDocument.Parse(payload);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("hard_delete", out var hard)
                && hard.ValueKind == JsonValueKind.True;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
