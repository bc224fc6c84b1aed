using System.Globalization;
using System.Text;
using Engram.Pipeline.DeviceSync.Pull;
using Engram.Pipeline.Testing;

namespace Engram.Pipeline.Benchmarks;

/// <summary>How much each row measures.</summary>
public sealed record BenchmarkSizes(string Label, int Runs, int TransportMessages, int DbRows, int DeviceRows, int NaiveRows, int PipelineRows,
    int LatencySeconds, int[] DeviceCounts, int[] OfferedLoads, int[] BacklogRows, int[] CatchUpRows, int LoopRows,
    int[] LoopOfferedLoads)
{
    /// <summary>About 40 minutes on 2 cores: the backlog drains, the catch-ups and C4 over the catch-up's rows take most.</summary>
    public static readonly BenchmarkSizes Full = new("full", 3, 200, 50_000, 10_000, 1_000, 10_000, 10, [1, 4, 16], [100, 1_000],
        [100_000, 1_000_000], [10_000, 100_000], 10_000, [100, 1_000]);

    public static readonly BenchmarkSizes Quick = new("quick", 1, 20, 5_000, 2_000, 300, 2_000, 5, [1, 4], [1_000],
        [10_000, 100_000], [2_000, 20_000], 2_000, [100, 1_000]);

    /// <summary>What the test suite runs so the benchmark cannot rot: every row, tiny sizes, no figures worth reading.</summary>
    public static readonly BenchmarkSizes Smoke = new("smoke", 1, 2, 500, 500, 50, 300, 1, [1, 2], [200], [300, 600], [300, 500], 200, [100]);
}

/// <summary>Runs every row of the table in one process, on one set of servers, and renders the table.</summary>
public static class BenchmarkRunner
{
    private const int MutationsPerMessage = 500;

    public static async Task<(IReadOnlyList<Row> Rows, string Table)> RunAsync(TestServers servers, BenchmarkSizes sizes, TextWriter progress)
    {
        var work = Directory.CreateTempSubdirectory("engram-bench-");
        var rows = new List<Row>();
        var runs = sizes.Runs;
        var (transportMessages, dbRows, deviceRows, naiveRows, pipelineRows, latencySeconds) =
            (sizes.TransportMessages, sizes.DbRows, sizes.DeviceRows, sizes.NaiveRows, sizes.PipelineRows, sizes.LatencySeconds);
        var quick = sizes.Label;

        async Task<Row> MeasureAsync(string name, Func<Task<double>> run, string note, List<double>? latencies = null)
        {
            var rates = new List<double>();
            var meter = ResourceMeter.Start();
            for (var i = 0; i < runs; i++)
            {
                rates.Add(await run());
                progress.WriteLine($"  {name} run {i + 1}: {rates[^1]:0} mutations/s");
            }
            var (cpu, peak) = await meter.StopAsync();
            var median = ResourceMeter.Median(rates);
            var totalMutations = rates.Count * (name.StartsWith("C1", StringComparison.Ordinal) ? transportMessages * MutationsPerMessage : ParseSize(note));
            var (p50, p99) = latencies is null ? ((double?)null, (double?)null) : ResourceMeter.Percentiles(latencies);
            var row = new Row(name, median, p50, p99, Math.Round(peak.Harness),
                Math.Round(cpu / totalMutations * 100_000, 1), note + $"; peak RSS MB: harness {peak.Harness:0}, RabbitMQ {peak.Broker:0}, PostgreSQL backend {peak.Database:0}");
            rows.Add(row);
            return row;
        }

        // A row whose device and ingest run as OS processes (run once): the memory column is the device process's peak, and their CPU counts too.
        async Task<Row> MeasureProcessesAsync(string name, Func<Task<ProcessRun>> run, string note)
        {
            ProcessRun? last = null;
            var row = await MeasureAsync(name, async () => (last = await run()).Rate, note);
            rows[^1] = row with
            {
                PeakMemoryMb = Math.Round(last!.DeviceMb),
                CpuSecondsPer100k = Math.Round(row.CpuSecondsPer100k + last.CpuSeconds / ParseSize(note) * 100_000, 1),
                Note = row.Note + $"; as OS processes, peak RSS MB: device {last.DeviceMb:0}, ingest {last.IngestMb:0}",
            };
            return rows[^1];
        }

        static int ParseSize(string note) => int.Parse(note.Split(' ')[0], CultureInfo.InvariantCulture);

        async Task<(Uri Amqp, string Db)> FreshAsync(string name)
        {
            var unique = ServersFixture.UniqueName(name);
            return (await servers.CreateVirtualHostAsync(unique), await servers.CreateDatabaseAsync(unique));
        }

        var batch = Payloads.Mutations(MutationsPerMessage);
        var body = Payloads.BatchBody(batch);
        var c1 = await MeasureAsync("C1 RabbitMQ.Client publish+consume", async () =>
        {
            var (amqp, _) = await FreshAsync("c1");
            return await Ceilings.TransportAsync(amqp, body, transportMessages) * MutationsPerMessage;
        }, $"{transportMessages} messages of {MutationsPerMessage} mutations ({body.Length / 1024} KiB), confirms, 64 in flight, manual acks");

        var dbData = Payloads.Mutations(dbRows, seed: 2);
        var c2Copy = await MeasureAsync("C2 Npgsql binary COPY", async () =>
            await Ceilings.DatabaseAsync((await FreshAsync("c2")).Db, dbData, 500, copy: true), $"{dbRows} rows in batches of 500 + counter row");
        var c2Insert = await MeasureAsync("C2 Npgsql multi-row INSERT (unnest)", async () =>
            await Ceilings.DatabaseAsync((await FreshAsync("c2")).Db, dbData, 500, copy: false), $"{dbRows} rows in batches of 500 + counter row");

        var c3 = await MeasureAsync("C3 SQLite: Engram's journal write + mapping/cursor", async () =>
            await Ceilings.DeviceAsync(work.FullName, deviceRows, 500),
            $"{deviceRows} mutations journaled as Engram journals them (EngramWriter, in its transactions), read, marked sent and their acceptance recorded in batches of 500");

        // The same rows (seed, pages of 1000) as the largest pull catch-up takes in below: the apply slows as the
        // database and its search index grow, and repeated rows cost less than new ones.
        var applyRows = sizes.CatchUpRows[^1];
        var applyPages = Payloads.Chunks(applyRows, 1000, seed: 5).ToList();
        const string c4Note = "Engram rows (sessions, observations, prompts, relations, edits, deletes) upserted by hand-written SQL into an Engram database, FTS triggers on, pages of 1000";
        var c4 = await MeasureAsync("C4 SQLite raw apply of pulled rows", async () => await Ceilings.ApplyAsync(work.FullName, applyPages, 1000),
            $"{applyRows} {c4Note} in one transaction each; no tombstones, deferral or outcome rows, foreign keys off");
        // The device applies a page in transactions of 100 rows, so that Engram never waits long for the write lock.
        await MeasureAsync($"C4 lever: {PageApplier.ChunkRows} rows per transaction", async () =>
                await Ceilings.ApplyAsync(work.FullName, applyPages, PageApplier.ChunkRows),
            $"{applyRows} {c4Note}, in transactions of {PageApplier.ChunkRows} rows as the device applies them");
        applyPages.Clear();

        var naiveLatencies = new List<double>();
        var b = await MeasureAsync("B naive: 1 message, 1 txn, 1 reply per mutation", async () =>
        {
            var (amqp, db) = await FreshAsync("b");
            var (rate, latencies) = await NaivePipeline.RunAsync(amqp, db, work.FullName, naiveRows, seed: 4);
            naiveLatencies.AddRange(latencies);
            return rate;
        }, $"{naiveRows} mutations, 32 requests outstanding", naiveLatencies);

        var pipeline = new Dictionary<int, Row>();
        foreach (var devices in sizes.DeviceCounts)
        {
            pipeline[devices] = await MeasureAsync($"P Engram.Pipeline, {devices} device(s)", async () =>
            {
                var (amqp, db) = await FreshAsync("p");
                return await PipelineBench.ThroughputAsync(amqp, db, work.FullName, devices, pipelineRows);
            }, $"{pipelineRows} mutations, journal commit to PushAccepted recorded");
        }
        // Levers: mutations per message and batches in flight, for one device, side by side in this run.
        // 500 is also the cloud's default limit per batch: a device asking for more is refused whole (batch-too-large).
        foreach (var (perBatch, inFlight) in new[] { (100, 4), (250, 4), (500, 1) })
        {
            await MeasureAsync($"P lever: {perBatch} per batch, {inFlight} in flight", async () =>
            {
                var (amqp, db) = await FreshAsync("lever");
                return await PipelineBench.ThroughputAsync(amqp, db, work.FullName, 1, pipelineRows, new Dictionary<string, string?>
                {
                    ["Publisher:MaxBatchMutations"] = perBatch.ToString(CultureInfo.InvariantCulture),
                    ["Publisher:MaxBatchesInFlight"] = inFlight.ToString(CultureInfo.InvariantCulture),
                });
            }, $"{pipelineRows} mutations, 1 device (default: 500 per batch, 4 in flight)");
        }
        // Every row from here on is one long run.
        runs = 1;
        var pushLatency = new Dictionary<int, Row>();
        foreach (var offered in sizes.OfferedLoads)
        {
            var latencies = new List<double>();
            pushLatency[offered] = await MeasureAsync($"P latency at {offered}/s offered, 4 devices", async () =>
            {
                var (amqp, db) = await FreshAsync("lat");
                latencies.AddRange(await PipelineBench.LatencyAsync(amqp, db, work.FullName, 4, offered, TimeSpan.FromSeconds(latencySeconds)));
                return latencies.Count / (double)latencySeconds;
            }, $"{offered * latencySeconds} mutations over {latencySeconds} s, 4 devices in projects of their own; latency journal commit to PushAccepted recorded", latencies);
        }

        // L, the loop: every device takes in every other's rows. Offered loads are in all, shared by the writers.
        var loop = new Dictionary<(int Writers, int? Offered), Row>();
        foreach (var (writers, label) in new[] { (1, "1 writer + 3 readers"), (4, "4 writers") })
        {
            foreach (var offered in sizes.LoopOfferedLoads.Select(o => (int?)o).Append(null))
            {
                var latencies = new List<double>();
                var mutations = offered is { } load ? load * latencySeconds : sizes.LoopRows;
                loop[(writers, offered)] = await MeasureAsync(offered is null ? $"L {label}, saturation" : $"L {label} at {offered}/s offered", async () =>
                {
                    var (amqp, db) = await FreshAsync("loop");
                    var (rate, toVisible) = await PipelineBench.LoopAsync(amqp, db, work.FullName, devices: 4, writers, mutations, offered);
                    latencies.AddRange(toVisible);
                    return rate;
                }, $"{mutations} mutations{(offered is null ? "" : $" over {latencySeconds} s")}, 4 devices; rows/s every device took in (cloud head over first write to all settled); latency journal commit to pipeline_applied.applied_at on each other device", latencies);
            }
        }

        // Backlog: the same device starts with 10x more unsent journal; its peak memory should not follow.
        var backlogs = new List<(int Rows, ProcessRun Run)>();
        foreach (var backlog in sizes.BacklogRows)
        {
            var (journal, journaled) = await PipelineBench.WriteBacklogAsync(work.FullName, Payloads.Project, backlog);
            await MeasureProcessesAsync($"P backlog drain, {backlog} journaled", async () =>
            {
                var (amqp, db) = await FreshAsync("backlog");
                var run = await PipelineBench.DrainAsync(amqp, db, work.FullName, journal, Payloads.Project, journaled);
                backlogs.Add((backlog, run));
                return run;
            }, $"{backlog} mutations journaled before the device starts, 1 device");
            File.Delete(journal);
        }

        // Pull catch-up of a new device, beside the raw read of the same log (the largest).
        var catchUps = new List<(int Rows, Row Row, ProcessRun Run)>();
        Row rawRead = null!;
        foreach (var logRows in sizes.CatchUpRows)
        {
            var (catchUpAmqp, catchUpDb) = await FreshAsync("catchup");
            var (logSource, logTarget) = await Ceilings.CreateTargetAsync(catchUpDb, "bench-log");
            await using (logSource)
            {
                await Ceilings.AppendAsync(logSource, logTarget, "bench-origin", Payloads.Chunks(logRows, 500, seed: 5, project: logTarget), copy: true);
                if (logRows == sizes.CatchUpRows[^1])
                {
                    rawRead = await MeasureAsync("C2 Npgsql raw read of the log", () => Ceilings.ReadLogAsync(logSource, logTarget, page: 1000),
                        $"{logRows} rows in keyset pages of 1000, every column");
                }
                ProcessRun? run = null;
                var row = await MeasureProcessesAsync($"P pull catch-up of a new device, {logRows} rows", async () =>
                        run = await PipelineBench.CatchUpAsync(catchUpAmqp, catchUpDb, work.FullName, logTarget, logRows),
                    $"{logRows} rows of another device already in the cloud, pages of 1000, applied until cursor = head");
                catchUps.Add((logRows, row, run!));
            }
        }
        var catchUp = catchUps[^1].Row;

        var c2 = c2Copy.MutationsPerSecond >= c2Insert.MutationsPerSecond ? c2Copy : c2Insert;
        var pushCeiling = new[] { c1, c2, c3 }.MinBy(c => c.MutationsPerSecond)!;
        var pushPartsCpu = c1.CpuSecondsPer100k + c2.CpuSecondsPer100k + c3.CpuSecondsPer100k;
        var oneDevice = pipeline[sizes.DeviceCounts[0]];
        var fourDevices = pipeline.GetValueOrDefault(4) ?? pipeline[sizes.DeviceCounts[^1]];
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"Engram.Pipeline benchmark, {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {quick} run, servers: {servers.Source}");
        table.AppendLine(CultureInfo.InvariantCulture, $"{"row",-52} {"mutations/s",12} {"p50 ms",8} {"p99 ms",8} {"CPU s/100k",10} {"peak MB",10}");
        foreach (var row in rows)
        {
            table.AppendLine(CultureInfo.InvariantCulture,
                $"{row.Name,-52} {row.MutationsPerSecond,12:0} {row.P50Ms?.ToString("0", CultureInfo.InvariantCulture) ?? "-",8} {row.P99Ms?.ToString("0", CultureInfo.InvariantCulture) ?? "-",8} {row.CpuSecondsPer100k,10:0.0} {row.PeakMemoryMb,10:0}");
        }
        table.AppendLine("Targets (ratios within this run):");
        var best = pipeline.Values.Max(p => p.MutationsPerSecond);
        var pushShare = oneDevice.MutationsPerSecond / pushCeiling.MutationsPerSecond;
        Target($"P, 1 device / slowest push-path ceiling ({pushCeiling.Name[..2]}) = {oneDevice.MutationsPerSecond:0} / {pushCeiling.MutationsPerSecond:0} = {pushShare:P0}",
            ">= 60%", pushShare >= 0.6);
        var pushCost = oneDevice.CpuSecondsPer100k / pushPartsCpu;
        Target($"P, 1 device, CPU per mutation / (C1 + C2 + C3) = {oneDevice.CpuSecondsPer100k:0.0} / {pushPartsCpu:0.0} s per 100k = {pushCost:0.00}x",
            "<= 1.5x", pushCost <= 1.5);
        var scaling = fourDevices.MutationsPerSecond / oneDevice.MutationsPerSecond;
        Target($"P, 4 devices / P, 1 device = {fourDevices.MutationsPerSecond:0} / {oneDevice.MutationsPerSecond:0} = {scaling:0.00}x", ">= 1x", scaling >= 1);
        var loopCeiling = Math.Min(c4.MutationsPerSecond / 3, best);
        var fourWriters = loop[(4, null)];
        var loopShare = fourWriters.MutationsPerSecond / loopCeiling;
        Target($"L, 4 writers / min(C4 / 3, P best) = {fourWriters.MutationsPerSecond:0} / {loopCeiling:0} = {loopShare:P0}", ">= 50%", loopShare >= 0.5);
        var loopPartsCpu = pushPartsCpu + (3 * c4.CpuSecondsPer100k);
        var loopCost = fourWriters.CpuSecondsPer100k / loopPartsCpu;
        Target($"L, 4 writers, CPU per mutation / (C1 + C2 + C3 + 3 x C4) = {fourWriters.CpuSecondsPer100k:0.0} / {loopPartsCpu:0.0} s per 100k = {loopCost:0.00}x",
            "<= 1.5x", loopCost <= 1.5);
        var takeIn = Math.Min(c4.MutationsPerSecond, rawRead.MutationsPerSecond);
        var catchUpShare = catchUp.MutationsPerSecond / takeIn;
        Target($"Catch-up / min(C4, raw read) = {catchUp.MutationsPerSecond:0} / {takeIn:0} = {catchUpShare:P0}", ">= 50%", catchUpShare >= 0.5);
        if (pushLatency.TryGetValue(1_000, out var atThousand))
        {
            Target($"P commit to PushAccepted p99 at 1000/s offered = {atThousand.P99Ms:0} ms", "<= 20 ms", atThousand.P99Ms <= 20);
        }
        foreach (var ((writers, offered), row) in loop.Where(l => l.Key.Offered is 100 or 1_000))
        {
            var target = offered == 100 ? 50 : 100;
            Target($"L commit to searchable elsewhere p99 at {offered}/s offered, {(writers == 1 ? "1 writer + 3 readers" : "4 writers")} = {row.P99Ms:0} ms",
                $"<= {target} ms", row.P99Ms <= target);
        }
        table.AppendLine(CultureInfo.InvariantCulture,
            $"  Memory, backlog of {backlogs[^1].Rows} vs {backlogs[0].Rows}: peak device process {backlogs[^1].Run.DeviceMb:0} vs {backlogs[0].Run.DeviceMb:0} MB, ingest process {backlogs[^1].Run.IngestMb:0} vs {backlogs[0].Run.IngestMb:0} MB");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"  Memory, catch-up of {catchUps[^1].Rows} vs {catchUps[0].Rows}: peak device process {catchUps[^1].Run.DeviceMb:0} vs {catchUps[0].Run.DeviceMb:0} MB, ingest process {catchUps[^1].Run.IngestMb:0} vs {catchUps[0].Run.IngestMb:0} MB");
        table.AppendLine(CultureInfo.InvariantCulture, $"  P (best) / B = {best / b.MutationsPerSecond:0.0}x");
        foreach (var row in rows)
        {
            table.AppendLine(CultureInfo.InvariantCulture, $"  {row.Name}: {row.Note}");
        }
        work.Delete(recursive: true);
        return (rows, table.ToString());

        void Target(string measured, string target, bool met) =>
            table.AppendLine(CultureInfo.InvariantCulture, $"  {measured}   (target {target}: {(met ? "met" : "not met")})");
    }
}
