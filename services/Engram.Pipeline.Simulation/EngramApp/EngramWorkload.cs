using System.Globalization;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>
/// A deterministic stream of Engram use on one device, run against an <see cref="EngramWriter"/> one operation at a
/// time: agent sessions that start, collect observations and prompts and end (so a session's upsert is usually
/// journaled after its children), chat-only sessions that are later deleted, <c>engram save</c> into the shared
/// <c>manual-save-&lt;project&gt;</c> session every device writes, edits and topic revisions, soft and hard deletes,
/// prompt deletes and judged relations. Observation sizes follow ENGRAM.md's mix. Projects are enrolled after
/// <paramref name="enrollAfter"/> operations, so enrollment backfills what came before. Give every device its own
/// seed (and its writer its own seeded Random): session and sync ids come from them.
/// </summary>
/// <param name="seed">Makes the stream; give every device its own.</param>
/// <param name="device">The device's name, in session ids and contents.</param>
/// <param name="projects">The projects the user works in, enrolled in this order.</param>
/// <param name="enrollAfter">Operations before the projects are enrolled.</param>
/// <param name="lateEnrollAfter">When given, the last project is enrolled only after this many operations: a project
/// enrolled while the devices sync, with memories of its own to backfill.</param>
public sealed class EngramWorkload(int seed, string device, IReadOnlyList<string>? projects = null, int enrollAfter = 20, int? lateEnrollAfter = null)
{
    private static readonly string[] Types = ["discovery", "bugfix", "decision", "architecture", "pattern", "config", "learning", "manual"];
    private static readonly string[] Tools = ["bash", "edit", "read", "mem_save"];
    private static readonly string[] Families = ["architecture", "bug", "decision", "pattern", "config", "discovery"];
    private static readonly string[] Verbs = ["related", "compatible", "scoped", "conflicts_with", "supersedes", "not_conflict"];

    private readonly Random _random = new(seed);
    private readonly EngramText _text = new(new Random(~seed));
    private readonly IReadOnlyList<string> _projects = projects is { Count: > 0 } ? projects : ["engram"];
    private readonly List<OpenSession> _open = [];
    private readonly Pool _endedChatOnly = new();
    private readonly Dictionary<string, Pool> _live = [];
    private readonly Dictionary<string, Pool> _softDeleted = [];
    private readonly Pool _prompts = new();
    private readonly Dictionary<string, List<string>> _promptsBySession = [];
    private readonly Dictionary<string, string> _promptSession = [];
    private int _enrolled;

    /// <summary>Operations performed so far.</summary>
    public int Operations { get; private set; }

    /// <summary>Goes on until at least <paramref name="mutations"/> rows are journaled; returns their seqs, in order.</summary>
    public IReadOnlyList<long> Journal(EngramWriter writer, int mutations)
    {
        var seqs = new List<long>();
        while (seqs.Count < mutations)
        {
            seqs.AddRange(Next(writer));
        }
        return seqs;
    }

    /// <summary>Performs the next operation and returns the seqs it journaled (none while its project is not enrolled).</summary>
    public IReadOnlyList<long> Next(EngramWriter writer)
    {
        var n = Operations++;
        if (_enrolled < _projects.Count && n >= (_enrolled == _projects.Count - 1 && _projects.Count > 1 ? lateEnrollAfter ?? enrollAfter : enrollAfter))
        {
            return writer.EnrollProject(_projects[_enrolled++]);
        }
        if (_open.Count == 0 || (_open.Count < 3 && _random.NextDouble() < 0.05))
        {
            return StartSession(writer, chatOnly: _random.NextDouble() < 0.15);
        }
        return _random.NextDouble() switch
        {
            < 0.38 => Observe(writer),
            < 0.52 => Prompt(writer),
            < 0.60 => ManualSave(writer),
            < 0.67 => Update(writer) ?? Observe(writer),
            < 0.71 => Delete(writer, hard: false) ?? Observe(writer),
            < 0.73 => Delete(writer, hard: true) ?? Observe(writer),
            < 0.75 => DeletePrompt(writer) ?? Prompt(writer),
            < 0.80 => Relate(writer) ?? Observe(writer),
            < 0.82 => DeleteSession(writer) ?? Observe(writer),
            _ => Observe(writer),
        };
    }

    private IReadOnlyList<long> StartSession(EngramWriter writer, bool chatOnly)
    {
        var project = _projects[_random.Next(_projects.Count)];
        var session = new OpenSession(NewSessionId(), project, chatOnly, chatOnly ? _random.Next(2, 7) : _random.Next(6, 41));
        _open.Add(session);
        return writer.StartSession(session.Id, project, Directory(project));
    }

    private IReadOnlyList<long> Observe(EngramWriter writer)
    {
        var candidates = _open.Where(s => !s.ChatOnly).ToList();
        if (candidates.Count == 0)
        {
            return StartSession(writer, chatOnly: false);
        }
        var session = candidates[_random.Next(candidates.Count)];
        if (session.Remaining-- <= 0)
        {
            return EndSession(writer, session);
        }
        return SaveObservation(writer, session.Id, session.Project);
    }

    private IReadOnlyList<long> Prompt(EngramWriter writer)
    {
        var session = _open[_random.Next(_open.Count)];
        if (session.Remaining-- <= 0)
        {
            return EndSession(writer, session);
        }
        var saved = writer.AddPrompt(session.Id, _text.Prompt(), session.Project);
        _prompts.Add(saved.SyncId);
        _promptSession[saved.SyncId] = session.Id;
        if (!_promptsBySession.TryGetValue(session.Id, out var prompts))
        {
            _promptsBySession[session.Id] = prompts = [];
        }
        prompts.Add(saved.SyncId);
        return saved.Seqs;
    }

    private IReadOnlyList<long> EndSession(EngramWriter writer, OpenSession session)
    {
        _open.Remove(session);
        if (session.ChatOnly)
        {
            _endedChatOnly.Add(session.Id);
        }
        return writer.EndSession(session.Id, _text.Summary());
    }

    /// <summary><c>engram save</c>: creates (or refreshes) the shared manual-save session, then saves into it.</summary>
    private IReadOnlyList<long> ManualSave(EngramWriter writer)
    {
        var project = _projects[_random.Next(_projects.Count)];
        var session = $"manual-save-{project}";
        var created = writer.CreateSession(session, project, Directory(project), "project_owned");
        return [.. created, .. SaveObservation(writer, session, project)];
    }

    private IReadOnlyList<long> SaveObservation(EngramWriter writer, string sessionId, string project)
    {
        var topic = _random.NextDouble() < 0.4
            ? $"{Families[_random.Next(Families.Length)]}/topic-{_random.Next(30).ToString(CultureInfo.InvariantCulture)}"
            : null;
        var saved = writer.AddObservation(sessionId, Types[_random.Next(Types.Length)], _text.Title(),
            _text.Content(_text.ObservationBytes()), project, _random.NextDouble() < 0.9 ? "project" : "personal", topic,
            _random.NextDouble() < 0.3 ? Tools[_random.Next(Tools.Length)] : null);
        Live(project).Add(saved.SyncId);
        return saved.Seqs;
    }

    private IReadOnlyList<long>? Update(EngramWriter writer)
    {
        if (PickLive(writer) is not (_, var syncId))
        {
            return null;
        }
        var newContent = _random.NextDouble() < 0.7;
        var newTitle = !newContent || _random.NextDouble() < 0.5;
        return Refusable(() => writer.UpdateObservation(syncId, newTitle ? _text.Title() : null,
            newContent ? _text.Content(_text.ObservationBytes()) : null));
    }

    private IReadOnlyList<long>? Delete(EngramWriter writer, bool hard)
    {
        var soft = hard && _random.Next(3) == 0 ? PickSoftDeleted(writer) : null;
        if ((soft ?? PickLive(writer)) is not (var project, var syncId))
        {
            return null;
        }
        Live(project).Remove(syncId);
        SoftDeleted(project).Remove(syncId);
        if (!hard)
        {
            SoftDeleted(project).Add(syncId);
        }
        return Refusable(() => writer.DeleteObservation(syncId, hard));
    }

    private IReadOnlyList<long>? DeletePrompt(EngramWriter writer)
    {
        if (_prompts.Count == 0)
        {
            return null;
        }
        var syncId = _prompts.Pick(_random);
        ForgetPrompt(syncId);
        return writer.DeletePrompt(syncId);
    }

    private IReadOnlyList<long>? Relate(EngramWriter writer)
    {
        var projects = _live.Where(p => p.Value.Count >= 2).Select(p => p.Key).ToList();
        if (projects.Count == 0)
        {
            return null;
        }
        var live = _live[projects[_random.Next(projects.Count)]];
        if (Pick(writer, live, ObservationState.Live) is not { } source)
        {
            return null;
        }
        live.Remove(source);
        var target = Pick(writer, live, ObservationState.Live);
        live.Add(source);
        if (target is null)
        {
            return null;
        }
        return Refusable(() => writer.JudgeRelation(source, target, Verbs[_random.Next(Verbs.Length)],
            _random.Next(4) == 0 ? null : _text.Content(_random.Next(40, 200)), Math.Round(0.5 + (_random.NextDouble() * 0.49), 2)).Seqs);
    }

    /// <summary>Deletes an ended chat-only session, which never held observations; its prompts go with it.</summary>
    private IReadOnlyList<long>? DeleteSession(EngramWriter writer)
    {
        if (_endedChatOnly.Count == 0)
        {
            return null;
        }
        var session = _endedChatOnly.Pick(_random);
        _endedChatOnly.Remove(session);
        if (_promptsBySession.Remove(session, out var prompts))
        {
            foreach (var prompt in prompts.ToList())
            {
                ForgetPrompt(prompt);
            }
        }
        return writer.DeleteSession(session);
    }

    /// <summary>
    /// An edit, delete or relation of an observation picked a moment ago: a pulled delete of another device's may have
    /// removed it since, and Engram refuses, as it would refuse the user. Null then, so another operation takes its turn.
    /// </summary>
    private static IReadOnlyList<long>? Refusable(Func<IReadOnlyList<long>> operation)
    {
        try
        {
            return operation();
        }
        catch (EngramNotFoundException)
        {
            return null;
        }
    }

    private void ForgetPrompt(string syncId)
    {
        _prompts.Remove(syncId);
        if (_promptSession.Remove(syncId, out var session) && _promptsBySession.TryGetValue(session, out var prompts))
        {
            prompts.Remove(syncId);
        }
    }

    private (string Project, string SyncId)? PickLive(EngramWriter writer) => PickFrom(writer, _live, ObservationState.Live);

    private (string Project, string SyncId)? PickSoftDeleted(EngramWriter writer) => PickFrom(writer, _softDeleted, ObservationState.SoftDeleted);

    private (string Project, string SyncId)? PickFrom(EngramWriter writer, Dictionary<string, Pool> pools, ObservationState state)
    {
        var project = _projects[_random.Next(_projects.Count)];
        return pools.TryGetValue(project, out var pool) && Pick(writer, pool, state) is { } syncId ? (project, syncId) : null;
    }

    /// <summary>
    /// An observation of <paramref name="pool"/> still in <paramref name="state"/>, or null. Sync changes them too: one
    /// revised here by topic may be another device's, which that device deletes; those leave the pool.
    /// </summary>
    private string? Pick(EngramWriter writer, Pool pool, ObservationState state)
    {
        while (pool.Count > 0)
        {
            var syncId = pool.Pick(_random);
            if (writer.Observation(syncId) == state)
            {
                return syncId;
            }
            pool.Remove(syncId);
        }
        return null;
    }

    private Pool Live(string project) => PoolOf(_live, project);

    private Pool SoftDeleted(string project) => PoolOf(_softDeleted, project);

    private static Pool PoolOf(Dictionary<string, Pool> pools, string project)
    {
        if (!pools.TryGetValue(project, out var pool))
        {
            pools[project] = pool = new Pool();
        }
        return pool;
    }

    private string Directory(string project) => $"/home/{device}/src/{project}";

    /// <summary>A UUID-shaped id, as agents' session ids are.</summary>
    private string NewSessionId()
    {
        Span<byte> bytes = stackalloc byte[16];
        _random.NextBytes(bytes);
        var hex = Convert.ToHexStringLower(bytes);
        return $"{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..]}";
    }

    private sealed class OpenSession(string id, string project, bool chatOnly, int remaining)
    {
        public string Id { get; } = id;
        public string Project { get; } = project;
        public bool ChatOnly { get; } = chatOnly;
        public int Remaining { get; set; } = remaining;
    }

    /// <summary>Keys with constant-time add, remove and random pick.</summary>
    private sealed class Pool
    {
        private readonly List<string> _keys = [];
        private readonly Dictionary<string, int> _index = [];

        public int Count => _keys.Count;

        public void Add(string key)
        {
            if (_index.TryAdd(key, _keys.Count))
            {
                _keys.Add(key);
            }
        }

        public void Remove(string key)
        {
            if (!_index.Remove(key, out var at))
            {
                return;
            }
            var last = _keys[^1];
            _keys.RemoveAt(_keys.Count - 1);
            if (at < _keys.Count)
            {
                _keys[at] = last;
                _index[last] = at;
            }
        }

        public string Pick(Random random) => _keys[random.Next(_keys.Count)];
    }
}
