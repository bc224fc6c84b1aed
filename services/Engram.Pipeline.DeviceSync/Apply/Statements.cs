using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Apply;

/// <summary>
/// The statements of one transaction, each made once and reused: a page applies many rows with the same few
/// statements, and a reused command keeps its prepared SQLite statement.
/// </summary>
internal sealed class Statements(SqliteTransaction transaction) : IDisposable
{
    private readonly Dictionary<string, SqliteCommand> _commands = new(StringComparer.Ordinal);

    public int Execute(string sql, params (string Name, object? Value)[] parameters) => Bound(sql, parameters).ExecuteNonQuery();

    /// <summary>The first column of the first row; null when there is no row, <see cref="DBNull"/> when it is NULL.</summary>
    public object? Scalar(string sql, params (string Name, object? Value)[] parameters) => Bound(sql, parameters).ExecuteScalar();

    public bool Exists(string sql, params (string Name, object? Value)[] parameters) => Scalar(sql, parameters) is long found && found != 0;

    public SqliteDataReader Read(string sql, params (string Name, object? Value)[] parameters) => Bound(sql, parameters).ExecuteReader();

    public void Dispose()
    {
        foreach (var command in _commands.Values)
        {
            command.Dispose();
        }
        _commands.Clear();
    }

    private SqliteCommand Bound(string sql, (string Name, object? Value)[] parameters)
    {
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = transaction.Command(sql);
            _commands.Add(sql, command);
        }
        return command.Bind(parameters);
    }
}
