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
        // One measurement per synced project, read once per instrument and scrape.
        IEnumerable<Measurement<long>> Each(Func<SyncCounts, long> value) => device.Targets.Current.Select(target =>
            new Measurement<long>(value(SyncCounts.Read(device.Database, target)),
                new KeyValuePair<string, object?>("device", device.Identity.DeviceId), new KeyValuePair<string, object?>("target", target.Project)));
        meter.CreateObservableGauge("engram.device.pending", () => Each(c => c.Pending),
            "{mutation}", "Journal rows the cloud has not answered yet");
        meter.CreateObservableCounter("engram.device.mutations.accepted", () => Each(c => c.Acked),
            "{mutation}", "This device's mutations the cloud accepted");
        meter.CreateObservableCounter("engram.device.mutations.rejected", () => Each(c => c.Rejected),
            "{mutation}", "This device's mutations the cloud rejected");
        meter.CreateObservableCounter("engram.device.mutations.pulled", () => Each(c => c.Pulled),
            "{mutation}", "Other devices' mutations taken in here");
        meter.CreateObservableGauge("engram.device.deferred", () => Each(c => c.Deferred),
            "{mutation}", "Pulled mutations waiting for their parent");
        meter.CreateObservableGauge("engram.device.dead", () => Each(c => c.Dead),
            "{mutation}", "Pulled mutations that can never apply");
        meter.CreateObservableGauge("engram.device.cursor.lag", () => Each(c => c.Lag),
            "{seq}", "Cloud head minus unified cursor: seqs not yet brought in");
        Pushed = meter.CreateCounter<long>("engram.device.mutations.pushed", "{mutation}", "Mutations sent to engram-push, resends included");
    }

    public Counter<long> Pushed { get; }
}
