using CsCheck;
using Engram.Pipeline.DeviceSync.Journal;
using Xunit.Abstractions;

namespace Engram.Pipeline.Convergence.Tests;

public enum StepKind { Record, Push, Deliver, Duplicate, Drop, Pull, Restart, ResendAll }

/// <summary>One step of a schedule; <c>A</c> and <c>B</c> choose among what the step can do.</summary>
public sealed record Step(StepKind Kind, int Device, int A, int B);

public sealed record Schedule(int Devices, Step[] Steps)
{
    public override string ToString() =>
        $"{Devices} devices: " + string.Join(", ", Steps.Select(s => $"{s.Kind}(d{s.Device},{s.A},{s.B})"));
}

public sealed class When_random_schedules_run_to_quiescence(ITestOutputHelper output)
{
    public const int Schedules = 250;

    private static readonly Gen<Schedule> Gen =
        CsCheck.Gen.Int[2, 5].SelectMany(devices =>
            CsCheck.Gen.Select(CsCheck.Gen.Enum<StepKind>(), CsCheck.Gen.Int[0, devices - 1], CsCheck.Gen.Int[0, 99], CsCheck.Gen.Int[0, 99],
                    (kind, device, a, b) => new Step(kind, device, a, b))
                .Array[5, 60]
                .Select(steps => new Schedule(devices, steps)));

    [Fact]
    public async Task Every_invariant_holds_against_the_folded_cloud_log()
    {
        var ran = 0;
        await Gen.SampleAsync(async schedule =>
        {
            await RunAsync(schedule);
            Interlocked.Increment(ref ran);
        }, iter: Schedules, threads: 1, print: s => s.ToString());
        output.WriteLine($"{ran} schedules over 2-5 devices ran to quiescence with I1-I6 holding");
        Assert.True(ran >= Schedules);
    }

    /// <summary>Runs the steps, checking what must hold at every moment, then settles and checks everything.</summary>
    private static async Task RunAsync(Schedule schedule)
    {
        await using var world = new SyncWorld(schedule.Devices);
        var counter = 0;
        foreach (var step in schedule.Steps)
        {
            switch (step.Kind)
            {
                case StepKind.Record:
                    await world.RecordAsync(step.Device, Enumerable.Range(0, 1 + step.A % 4)
                        .Select(i => Mutation(world.Devices[step.Device].Id, counter++, step.B + i)).ToArray());
                    break;
                case StepKind.Push:
                    await world.PushAsync(step.Device, 1 + step.A % 5);
                    break;
                case StepKind.Pull:
                    await world.PullAsync(step.Device, 1 + step.A % 7);
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
            var moment = await world.CheckAsync(quiescent: false);
            var broken = moment.Where(v => !v.Pass && (v.Name.StartsWith("I2", StringComparison.Ordinal)
                || v.Name.StartsWith("I3", StringComparison.Ordinal) || v.Name.StartsWith("I5", StringComparison.Ordinal))).ToList();
            Assert.True(broken.Count == 0, $"after {step}: " + string.Join("; ", broken.Select(v => $"{v.Name}: {v.Detail}")));
        }

        await world.QuiesceAsync();
        var verdicts = await world.CheckAsync(quiescent: true);
        Assert.True(verdicts.All(v => v.Pass), string.Join("\n", verdicts.Select(v => $"{(v.Pass ? "PASS" : "FAIL")} {v.Name}: {v.Detail}")));
    }

    /// <summary>Edits of a few shared entities, so devices overwrite and delete each other's work.</summary>
    private static NewMutation Mutation(string device, int n, int choice)
    {
        var key = $"obs-{choice % 6}";
        return (choice / 6 % 5) switch
        {
            0 => new NewMutation("observation", "delete", key, $$"""{"sync_id":"{{key}}","hard_delete":false,"by":"{{device}}","n":{{n}}}"""),
            1 => new NewMutation("observation", "delete", key, $$"""{"sync_id":"{{key}}","hard_delete":true,"by":"{{device}}","n":{{n}}}"""),
            _ => new NewMutation("observation", "upsert", key, $$"""{"sync_id":"{{key}}","title":"edit {{n}}","by":"{{device}}"}"""),
        };
    }
}
