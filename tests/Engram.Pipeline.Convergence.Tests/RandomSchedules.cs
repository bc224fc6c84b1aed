using System.Diagnostics;
using System.Text.Json;
using CsCheck;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Simulation.EngramApp;
using Xunit.Abstractions;

namespace Engram.Pipeline.Convergence.Tests;

/// <summary>
/// What a schedule does: Engram use (<see cref="Use"/>), an edit or delete of a memory whichever device made it
/// (<see cref="Edit"/>), a session's end, and the sync loop's moves and faults.
/// </summary>
public enum StepKind { Use, Edit, EndSession, Push, Deliver, Duplicate, Drop, Pull, Restart, ResendAll }

/// <summary>One step of a schedule; <c>A</c> and <c>B</c> choose among what the step can do.</summary>
public sealed record Step(StepKind Kind, int Device, int A, int B);

/// <summary>A schedule: the seed of the devices' Engram use, how many devices, and the steps.</summary>
public sealed record Schedule(int Seed, int Devices, Step[] Steps)
{
    public override string ToString() =>
        $"seed {Seed}, {Devices} devices: " + string.Join(", ", Steps.Select(s => $"{s.Kind}(d{s.Device},{s.A},{s.B})"));
}

public sealed class When_random_schedules_run_to_quiescence(ITestOutputHelper output)
{
    /// <summary>Schedules per run: 25–30 s on a busy two-core machine.</summary>
    public const int Schedules = 100;

    private static readonly Gen<Schedule> Gen =
        CsCheck.Gen.Select(CsCheck.Gen.Int[0, 1000], CsCheck.Gen.Int[2, 4]).SelectMany((seed, devices) =>
            CsCheck.Gen.Select(CsCheck.Gen.Enum<StepKind>(), CsCheck.Gen.Int[0, devices - 1], CsCheck.Gen.Int[0, 99], CsCheck.Gen.Int[0, 99],
                    (kind, device, a, b) => new Step(kind, device, a, b))
                .Array[5, 60]
                .Select(steps => new Schedule(seed, devices, steps)));

    [Fact]
    public async Task Every_invariant_holds_against_the_folded_cloud_log()
    {
        var ran = 0;
        var seen = new Dictionary<string, long>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        await Gen.SampleAsync(async schedule =>
        {
            foreach (var (what, count) in await RunAsync(schedule))
            {
                seen[what] = seen.GetValueOrDefault(what) + count;
            }
            ran++;
        }, iter: Schedules, threads: 1, print: s => s.ToString());
        output.WriteLine($"{ran} schedules over 2-4 Engram devices ran to quiescence with I1-I6 holding, in {clock.Elapsed}");
        output.WriteLine(string.Join(", ", seen.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => $"{s.Key} {s.Value}")));
        Assert.True(ran >= Schedules);
        // The schedules made devices overwrite and delete each other's work, and children wait for parents.
        Assert.All(["cloud rows", "pulled applied", "pulled superseded", "children before their session"],
            what => Assert.True(seen.GetValueOrDefault(what) > 0, $"no schedule had {what}"));
    }

    /// <summary>
    /// Runs the steps, checking what must hold at every moment, then settles and checks everything; returns how many
    /// cloud rows the schedule made (and how many of them came before their session), what became of the rows devices
    /// pulled, and the cloud's rejections.
    /// </summary>
    private static async Task<Dictionary<string, long>> RunAsync(Schedule schedule)
    {
        await using var world = new SyncWorld(schedule.Devices, schedule.Seed);
        // Each device's Engram use: sessions, observations, prompts, relations, edits and deletes, as Engram writes them.
        var use = world.Devices.Select((device, i) => new EngramWorkload(schedule.Seed * 10 + i, device.Id, [SyncWorld.Project], enrollAfter: 0))
            .ToArray();
        var edits = 0;
        foreach (var step in schedule.Steps)
        {
            switch (step.Kind)
            {
                case StepKind.Use:
                    for (var i = 0; i <= step.A % 8; i++)
                    {
                        Refusable(() => use[step.Device].Next(world.Engram(step.Device)));
                    }
                    break;
                case StepKind.Edit:
                    await EditAsync(world, step, edits++);
                    break;
                case StepKind.EndSession:
                    await EndSessionAsync(world, step, edits++);
                    break;
                case StepKind.Push:
                    await world.PushAsync(step.Device, 1 + (step.A % 5));
                    break;
                case StepKind.Pull:
                    await world.PullAsync(step.Device, 1 + (step.A % 7));
                    break;
                case StepKind.Deliver when world.Network.Count > 0:
                    await world.DeliverAsync(step.A % world.Network.Count);
                    break;
                case StepKind.Duplicate when world.Network.Count > 0:
                    world.Network.Add(world.Network[step.A % world.Network.Count]);
                    break;
                case StepKind.Drop when world.Network.Count > 0:
                    world.Network.RemoveAt(step.A % world.Network.Count);
                    break;
                case StepKind.Restart:
                    world.Restart(step.Device);
                    break;
                case StepKind.ResendAll:
                    // The publisher's timeout: everything unanswered is sent again from the journal.
                    world.Devices[step.Device].LastSent = null;
                    break;
            }
            if (step.Kind != StepKind.Deliver)
            {
                // Only a delivery writes what I2, I3 and I5 read: the cloud log, mappings, cursors and pulled rows.
                continue;
            }
            var moment = await world.CheckAsync(quiescent: false);
            var broken = moment.Where(v => !v.Pass && (v.Name.StartsWith("I2", StringComparison.Ordinal)
                || v.Name.StartsWith("I3", StringComparison.Ordinal) || v.Name.StartsWith("I5", StringComparison.Ordinal))).ToList();
            Assert.True(broken.Count == 0, $"after {step}: " + string.Join("; ", broken.Select(v => $"{v.Name}: {v.Detail}")));
        }

        await world.QuiesceAsync();
        var verdicts = await world.CheckAsync(quiescent: true);
        Assert.True(verdicts.All(v => v.Pass), string.Join("\n", verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}")));

        var seen = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            ["cloud rows"] = await world.HeadAsync(),
            ["children before their session"] = ChildrenBeforeTheirSession(await world.CloudLogAsync()),
        };
        foreach (var device in world.Devices)
        {
            foreach (var (what, count) in await device.RowsAsync("""
                SELECT 'pulled ' || outcome, COUNT(*) FROM pipeline_applied GROUP BY outcome
                UNION ALL SELECT 'rejected ' || reason, COUNT(*) FROM pipeline_rejections GROUP BY reason
                """, r => (r.GetString(0), r.GetInt64(1))))
            {
                seen[what] = seen.GetValueOrDefault(what) + count;
            }
        }
        return seen;
    }

    /// <summary>
    /// The user edits or deletes a memory the device holds, whichever device made it, so devices overwrite and delete
    /// each other's work: <c>A</c> picks the observation, <c>B</c> what happens to it.
    /// </summary>
    private static async Task EditAsync(SyncWorld world, Step step, int n)
    {
        var device = world.Devices[step.Device];
        var engram = world.Engram(step.Device);
        var live = await device.RowsAsync("SELECT sync_id FROM observations WHERE deleted_at IS NULL ORDER BY sync_id", r => r.GetString(0));
        if (live.Count == 0)
        {
            return;
        }
        var syncId = live[step.A % live.Count];
        Refusable(() => (step.B % 4) switch
        {
            0 => engram.UpdateObservation(syncId, $"Edit {n}", null),
            1 => engram.UpdateObservation(syncId, null, $"edit {n} of {device.Id}"),
            2 => engram.DeleteObservation(syncId, hard: false),
            _ => engram.DeleteObservation(syncId, hard: true),
        });
    }

    /// <summary>Observations and prompts the cloud log places before their session's upsert: every other device defers them.</summary>
    private static long ChildrenBeforeTheirSession(IReadOnlyList<CloudMutation> log)
    {
        var sessions = new HashSet<string>(StringComparer.Ordinal);
        long early = 0;
        foreach (var row in log.Where(r => r.Op == "upsert"))
        {
            if (row.Entity == "session")
            {
                sessions.Add(row.EntityKey);
                continue;
            }
            using var payload = JsonDocument.Parse(row.Payload);
            if (row.Entity is "observation" or "prompt" && payload.RootElement.TryGetProperty("session_id", out var session)
                && !sessions.Contains(session.GetString()!))
            {
                early++;
            }
        }
        return early;
    }

    /// <summary>
    /// A session the device holds ends (<c>A</c> picks which, its own or one another device started): Engram journals the
    /// session's upsert again and deletes the pending one, so a session often reaches the cloud after its observations
    /// and prompts.
    /// </summary>
    private static async Task EndSessionAsync(SyncWorld world, Step step, int n)
    {
        var open = await world.Devices[step.Device].RowsAsync("SELECT id FROM sessions WHERE ended_at IS NULL ORDER BY id", r => r.GetString(0));
        if (open.Count > 0)
        {
            world.Engram(step.Device).EndSession(open[step.A % open.Count], $"summary {n}");
        }
    }

    /// <summary>
    /// Runs an Engram operation that Engram itself may refuse: the workload remembers a memory that another device has
    /// deleted since, and Engram, as upstream, refuses to edit or delete what it does not hold.
    /// </summary>
    private static void Refusable(Func<IReadOnlyList<long>> operation)
    {
        try
        {
            operation();
        }
        catch (EngramNotFoundException)
        {
        }
    }
}
