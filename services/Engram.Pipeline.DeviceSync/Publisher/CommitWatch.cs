using Engram.Pipeline.DeviceSync.Storage;
using Microsoft.Data.Sqlite;

namespace Engram.Pipeline.DeviceSync.Publisher;

/// <summary>
/// Wakes the publisher within milliseconds of a commit to the Engram database by anyone else, such as the Engram
/// application journaling a change. SQLite's <c>PRAGMA data_version</c> changes on a connection whenever another
/// connection commits, and reading it touches no table, so it is asked every <see cref="Interval"/>. The publisher
/// still polls the journal on its own: this only makes it early.
/// </summary>
public sealed class CommitWatch(EngramDatabase database, Wakeup publisher, TimeProvider clock)
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(10);

    public async Task RunAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, clock);
        SqliteConnection? connection = null;
        SqliteCommand? version = null;
        long? seen = null;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    if (connection is null)
                    {
                        connection = database.Open();
                        version = connection.CreateCommand();
                        version.CommandText = "PRAGMA data_version";
                        seen = null;
                    }
                    var now = (long)version!.ExecuteScalar()!;
                    if (seen is not null && now != seen)
                    {
                        publisher.Notify();
                    }
                    seen = now;
                }
                catch (SqliteException)
                {
                    // The database is away; the publisher's own poll meets the same trouble and reports it. Open again
                    // at the next tick.
                    Close();
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            Close();
        }

        void Close()
        {
            version?.Dispose();
            connection?.Dispose();
            (connection, version) = (null, null);
        }
    }
}
