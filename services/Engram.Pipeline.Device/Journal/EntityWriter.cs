using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Journal;

/// <summary>
/// Applies this device's own mutations to the <c>entities</c> table inside the journal's transaction.
/// An own edit has no cloud seq yet (<c>cloud_seq</c> NULL) until the cloud answers.
/// </summary>
internal sealed class EntityWriter(SqliteConnection connection, SqliteTransaction transaction) : IAsyncDisposable
{
    // A soft delete keeps the entity's last content and marks it deleted.
    private readonly SqliteCommand _upsert = Prepare(connection, transaction, """
        INSERT INTO entities (target_key, entity, entity_key, payload, deleted, cloud_seq, local_seq, updated_at)
        VALUES ($target, $entity, $key, $payload, $deleted, NULL, $seq, $at)
        ON CONFLICT (target_key, entity, entity_key) DO UPDATE SET
            payload = CASE WHEN excluded.deleted = 1 THEN entities.payload ELSE excluded.payload END,
            deleted = excluded.deleted, cloud_seq = NULL, local_seq = excluded.local_seq, updated_at = excluded.updated_at
        """, "$target", "$entity", "$key", "$payload", "$deleted", "$seq", "$at");

    private readonly SqliteCommand _hardDelete = Prepare(connection, transaction,
        "DELETE FROM entities WHERE target_key = $target AND entity = $entity AND entity_key = $key",
        "$target", "$entity", "$key");

    public async Task ApplyOwnAsync(string target, NewMutation mutation, long seq, string occurredAt, CancellationToken ct)
    {
        if (mutation.Op == "delete" && DeviceJournal.IsHardDelete(mutation.Payload))
        {
            Bind(_hardDelete, target, mutation);
            await _hardDelete.ExecuteNonQueryAsync(ct);
            return;
        }
        Bind(_upsert, target, mutation);
        _upsert.Parameters["$payload"].Value = mutation.Payload;
        _upsert.Parameters["$deleted"].Value = mutation.Op == "delete" ? 1 : 0;
        _upsert.Parameters["$seq"].Value = seq;
        _upsert.Parameters["$at"].Value = occurredAt;
        await _upsert.ExecuteNonQueryAsync(ct);
    }

    private static void Bind(SqliteCommand command, string target, NewMutation mutation)
    {
        command.Parameters["$target"].Value = target;
        command.Parameters["$entity"].Value = mutation.Entity;
        command.Parameters["$key"].Value = mutation.EntityKey;
    }

    private static SqliteCommand Prepare(SqliteConnection connection, SqliteTransaction transaction, string sql,
        params string[] parameters)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var name in parameters)
        {
            command.Parameters.Add(new SqliteParameter { ParameterName = name });
        }
        return command;
    }

    public async ValueTask DisposeAsync()
    {
        await _upsert.DisposeAsync();
        await _hardDelete.DisposeAsync();
    }
}
