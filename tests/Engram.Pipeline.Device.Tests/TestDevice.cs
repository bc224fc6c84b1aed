using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.DeviceSync.Cursor;
using Engram.Pipeline.DeviceSync.Journal;
using Engram.Pipeline.DeviceSync.Storage;
using Engram.Pipeline.Testing;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.Device.Tests;

/// <summary>A device database in a temp file with the device's own journal, reader and cursor service.</summary>
public sealed class TestDevice : IAsyncDisposable
{
    private readonly DirectoryInfo _directory;

    private TestDevice(DirectoryInfo directory, DeviceDatabase database, DeviceIdentity identity)
    {
        _directory = directory;
        Database = database;
        Identity = identity;
        Journal = new DeviceJournal(database, identity, new Wakeup(TimeProvider.System), TimeProvider.System);
        Reader = new JournalReader(database, identity);
        Cursor = new CursorService(database, identity, TimeProvider.System);
    }

    public DeviceDatabase Database { get; }
    public DeviceIdentity Identity { get; }
    public DeviceJournal Journal { get; }
    public JournalReader Reader { get; }
    public CursorService Cursor { get; }

    public static Task<TestDevice> CreateAsync(string deviceId = "device-a", string target = "team")
    {
        var directory = Directory.CreateTempSubdirectory("engram-device-test-");
        var database = new DeviceDatabase($"Data Source={Path.Combine(directory.FullName, "device.db")}");
        var identity = new DeviceIdentity(database.Initialise(deviceId, TimeProvider.System), target);
        return Task.FromResult(new TestDevice(directory, database, identity));
    }

    public async Task<IReadOnlyList<long>> RecordObservationsAsync(int count, string prefix = "obs")
    {
        var mutations = Enumerable.Range(0, count)
            .Select(i => new NewMutation("observation", "upsert", $"{prefix}-{i}", $$"""{"sync_id":"{{prefix}}-{{i}}","title":"t{{i}}"}"""))
            .ToList();
        return await Journal.RecordAsync(mutations, CancellationToken.None);
    }

    public async Task<long> ScalarAsync(string sql)
    {
        await using var connection = await Database.OpenAsync(CancellationToken.None);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public Task<string> DumpAsync() => DeviceDump.ReadAsync(Database.Path);

    public ValueTask DisposeAsync()
    {
        SqliteConnection.ClearAllPools();
        _directory.Delete(recursive: true);
        return ValueTask.CompletedTask;
    }
}
