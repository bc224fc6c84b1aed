namespace Engram.Pipeline.DeviceSync.Publisher;

/// <summary>
/// The batches sent and not yet answered, oldest first. Each batch is chained to the one before it
/// (its previousLocalSeq is that batch's last seq), so dropping a batch drops everything after it.
/// </summary>
public sealed class InFlightWindow
{
    private readonly Lock _lock = new();
    private readonly List<SentBatch> _batches = [];
    private int? _maxMutations;

    public sealed record SentBatch(Guid Id, long FirstSeq, long LastSeq, int Count, DateTimeOffset SentAt);

    public int Count
    {
        get { lock (_lock) { return _batches.Count; } }
    }

    /// <summary>The last seq in flight, which the next batch follows; null when nothing is in flight.</summary>
    public long? LastSeq
    {
        get { lock (_lock) { return _batches.Count == 0 ? null : _batches[^1].LastSeq; } }
    }

    /// <summary>Mutations sent and not yet answered.</summary>
    public int Mutations
    {
        get { lock (_lock) { return _batches.Sum(b => b.Count); } }
    }

    public void Add(SentBatch batch)
    {
        lock (_lock) { _batches.Add(batch); }
    }

    /// <summary>The cloud answered this batch: it leaves the window.</summary>
    public void Answered(Guid batchId)
    {
        lock (_lock) { _batches.RemoveAll(b => b.Id == batchId); }
    }

    /// <summary>
    /// Mutations per batch this target's cloud takes, once it refused a batch as too large; null until then (the
    /// publisher's own limit holds).
    /// </summary>
    public int? MaxMutations
    {
        get { lock (_lock) { return _maxMutations; } }
    }

    /// <summary>
    /// The cloud refused this batch as too large (its limits are below the device's): later batches carry at most half
    /// as many mutations, and it and the batches chained after it are sent again. Returns the limit now in force: also
    /// for a batch no longer in flight, which an earlier refusal dropped and which goes again under that limit. Null
    /// when the batch held one mutation and cannot shrink.
    /// </summary>
    public int? Shrink(Guid batchId)
    {
        lock (_lock)
        {
            var index = _batches.FindIndex(b => b.Id == batchId);
            if (index < 0)
            {
                return _maxMutations;
            }
            if (_batches[index].Count <= 1)
            {
                return null;
            }
            _maxMutations = Math.Min(_maxMutations ?? int.MaxValue, _batches[index].Count / 2);
            _batches.RemoveRange(index, _batches.Count - index);
            return _maxMutations;
        }
    }

    /// <summary>The cloud refused this batch: it and the batches chained after it are sent again.</summary>
    public void Resend(Guid batchId)
    {
        lock (_lock)
        {
            var index = _batches.FindIndex(b => b.Id == batchId);
            if (index >= 0)
            {
                _batches.RemoveRange(index, _batches.Count - index);
            }
        }
    }

    /// <summary>Forgets every batch, so everything unanswered is sent again from the journal.</summary>
    public void Clear()
    {
        lock (_lock) { _batches.Clear(); }
    }

    /// <summary>
    /// When the oldest batch has waited past <paramref name="cutoff"/>, forgets the whole window so
    /// that everything unanswered is sent again from the journal; returns how many batches were dropped.
    /// </summary>
    public int ExpireSentBefore(DateTimeOffset cutoff)
    {
        lock (_lock)
        {
            if (_batches.Count == 0 || _batches[0].SentAt >= cutoff)
            {
                return 0;
            }
            var dropped = _batches.Count;
            _batches.Clear();
            return dropped;
        }
    }
}
