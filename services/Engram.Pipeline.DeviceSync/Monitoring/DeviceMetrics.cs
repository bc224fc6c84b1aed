using System.Diagnostics.Metrics;
using Engram.Pipeline.Hosting;

namespace Engram.Pipeline.DeviceSync.Monitoring;

/// <summary>
/// The device's instruments, on the <c>Engram.Pipeline</c> meter, read from its database when
/// scraped: rows waiting for the cloud, rows answered, and how far the cursor is behind the head.
/// </summary>
public sealed class DeviceMetrics
{
    public DeviceMetrics(IMeterFactory meters, DeviceRuntime device)
    {
        var meter = meters.Create(Operations.MeterName);
        var tags = new KeyValuePair<string, object?>[] { new("device", device.Identity.DeviceId), new("target", device.Identity.Target) };
        SyncCounts Counts() => SyncCounts.Read(device.Database, device.Identity.Target);
        meter.CreateObservableGauge("engram.device.pending", () => new Measurement<long>(Counts().Pending, tags),
            "{mutation}", "Journal rows the cloud has not answered yet");
        meter.CreateObservableCounter("engram.device.mutations.accepted", () => new Measurement<long>(Counts().Acked, tags),
            "{mutation}", "This device's mutations the cloud accepted");
        meter.CreateObservableCounter("engram.device.mutations.rejected", () => new Measurement<long>(Counts().Rejected, tags),
            "{mutation}", "This device's mutations the cloud rejected");
        meter.CreateObservableCounter("engram.device.mutations.pulled", () => new Measurement<long>(Counts().Pulled, tags),
            "{mutation}", "Other devices' mutations applied here");
        meter.CreateObservableGauge("engram.device.cursor.lag", () => new Measurement<long>(Counts().Lag, tags),
            "{seq}", "Cloud head minus unified cursor: seqs not yet brought in");
        Pushed = meter.CreateCounter<long>("engram.device.mutations.pushed", "{mutation}", "Mutations sent to engram-push, resends included");
    }

    public Counter<long> Pushed { get; }
}
