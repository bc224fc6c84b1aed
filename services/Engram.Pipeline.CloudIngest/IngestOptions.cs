using System.ComponentModel.DataAnnotations;

namespace Engram.Pipeline.CloudIngest;

/// <summary>Limits a pushed batch must respect, and how much one ingest process takes on at once.</summary>
public sealed class IngestOptions
{
    public const string Section = "Ingest";

    /// <summary>A mutation whose payload is larger (UTF-8 bytes) is rejected with <c>payload-too-large</c>.</summary>
    [Range(1, int.MaxValue)]
    public int MaxPayloadBytes { get; set; } = 256 * 1024;

    /// <summary>A batch with more mutations is refused whole with <c>batch-too-large</c>.</summary>
    [Range(1, 100_000)]
    public int MaxBatchMutations { get; set; } = 500;

    /// <summary>A batch of several mutations whose payloads add up to more bytes is refused whole.</summary>
    [Range(1, int.MaxValue)]
    public int MaxBatchBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>Most rows in one MutationsPage, whatever the request asks for.</summary>
    [Range(1, 100_000)]
    public int MaxPageRows { get; set; } = 1000;

    /// <summary>Batches one process works on at once (each holds a database connection).</summary>
    [Range(1, 256)]
    public int ConcurrentMessageLimit { get; set; } = 8;
}
