using System.Text.Json;
using Engram.Pipeline.DeviceSync.Journal;

namespace Engram.Pipeline.Simulation;

/// <summary>
/// A realistic stream of Engram changes for one device: mostly new observations (200 B–4 KiB of
/// content), edits of entities every device shares, sessions and prompts, and soft and hard deletes.
/// Deterministic for a seed.
/// </summary>
public sealed class Workload(string deviceId, int seed, int sharedEntities = 50)
{
    private readonly Random _random = new(seed);
    private int _next;

    public IReadOnlyList<NewMutation> Next(int count)
    {
        var batch = new List<NewMutation>(count);
        for (var i = 0; i < count; i++)
        {
            batch.Add(NextOne());
        }
        return batch;
    }

    private NewMutation NextOne()
    {
        var n = _next++;
        var roll = _random.NextDouble();
        return roll switch
        {
            < 0.60 => Observation($"obs-{deviceId}-{n}"),
            < 0.80 => Observation($"obs-shared-{_random.Next(sharedEntities)}"),
            < 0.85 => new NewMutation("session", "upsert", $"ses-{deviceId}-{n / 100}",
                Json(new { sync_id = $"ses-{deviceId}-{n / 100}", project = "engram", directory = "/src/engram", started_at = Now() })),
            < 0.90 => new NewMutation("prompt", "upsert", $"prm-{deviceId}-{n}",
                Json(new { sync_id = $"prm-{deviceId}-{n}", session_id = $"ses-{deviceId}-{n / 100}", content = Text(200, 800), created_at = Now() })),
            < 0.95 => Delete($"obs-shared-{_random.Next(sharedEntities)}", hard: false),
            _ => Delete($"obs-shared-{_random.Next(sharedEntities)}", hard: _random.Next(2) == 0),
        };
    }

    private NewMutation Observation(string key) =>
        new("observation", "upsert", key, Json(new
        {
            sync_id = key,
            session_id = $"ses-{deviceId}",
            type = "discovery",
            title = $"Finding {_next}",
            content = Text(200, 4096),
            project = "engram",
            scope = "project",
            topic_key = $"topic/{_random.Next(20)}",
            created_at = Now(),
            updated_at = Now(),
        }), "engram");

    private static NewMutation Delete(string key, bool hard) =>
        new("observation", "delete", key, Json(new { sync_id = key, deleted = true, hard_delete = hard, deleted_at = Now() }));

    private string Text(int min, int max)
    {
        const string words = "the agent noted that cursor seq batch cloud device journal mapping pull push sync memory ";
        var length = _random.Next(min, max);
        var chars = new char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = words[_random.Next(words.Length)];
        }
        return new string(chars);
    }

    private static string Now() => DateTimeOffset.UtcNow.ToString("O");

    private static string Json<T>(T value) => JsonSerializer.Serialize(value);
}
