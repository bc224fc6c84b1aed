using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Storage;

/// <summary>The two steps every SQLite statement here takes: made in its transaction, then bound.</summary>
public static class SqliteCommands
{
    /// <summary>A command of <paramref name="transaction"/> running <paramref name="sql"/>, with <paramref name="parameters"/> bound.</summary>
    public static SqliteCommand Command(this SqliteTransaction transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = transaction.Connection!.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.Bind(parameters);
    }

    /// <summary>Sets the parameters' values, adding those the command does not have yet; null is SQL NULL.</summary>
    public static SqliteCommand Bind(this SqliteCommand command, params (string Name, object? Value)[] values)
    {
        foreach (var (name, value) in values)
        {
            if (command.Parameters.Contains(name))
            {
                command.Parameters[name].Value = value ?? DBNull.Value;
            }
            else
            {
                command.Parameters.AddWithValue(name, value ?? DBNull.Value);
            }
        }
        return command;
    }
}
