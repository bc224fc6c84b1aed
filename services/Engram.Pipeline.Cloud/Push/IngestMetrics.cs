using System.Diagnostics.Metrics;
using Engram.Pipeline.Contracts;
using Engram.Pipeline.Hosting;

namespace Engram.Pipeline.Cloud.Push;

/// <summary>The cloud's instruments, on the <c>Engram.Pipeline</c> meter.</summary>
public sealed class IngestMetrics
{
    private readonly Counter<long> _accepted;
    private readonly Counter<long> _duplicates;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _refused;
    private readonly Histogram<int> _batchSize;
    private readonly Histogram<double> _duration;

    public IngestMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(Operations.MeterName);
        _accepted = meter.CreateCounter<long>("engram.ingest.mutations.accepted", "{mutation}", "Mutations given a new cloud seq");
        _duplicates = meter.CreateCounter<long>("engram.ingest.mutations.duplicate", "{mutation}", "Mutations answered again with their stored seq");
        _rejected = meter.CreateCounter<long>("engram.ingest.mutations.rejected", "{mutation}", "Mutations rejected with a reason");
        _refused = meter.CreateCounter<long>("engram.ingest.batches.refused", "{batch}", "Whole batches refused (PushRejected)");
        _batchSize = meter.CreateHistogram<int>("engram.ingest.batch.size", "{mutation}", "Mutations per pushed batch");
        _duration = meter.CreateHistogram<double>("engram.ingest.duration", "ms", "Time to ingest one batch, database transaction included");
    }

    public void Record(PushMutations batch, PushOutcome outcome, TimeSpan elapsed)
    {
        _batchSize.Record(batch.Mutations?.Count ?? 0);
        _duration.Record(elapsed.TotalMilliseconds);
        switch (outcome)
        {
            case PushOutcome.Accepted { Reply: var reply, NewRows: var newRows }:
                _accepted.Add(newRows);
                _duplicates.Add(reply.Mappings.Count - newRows);
                foreach (var group in reply.Rejected.GroupBy(r => r.Reason))
                {
                    _rejected.Add(group.Count(), new KeyValuePair<string, object?>("reason", group.Key));
                }
                break;
            case PushOutcome.Refused { Reply: var refusal }:
                _refused.Add(1, new KeyValuePair<string, object?>("reason", refusal.Reason));
                break;
        }
    }
}
