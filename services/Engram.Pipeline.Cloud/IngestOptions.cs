using System.ComponentModel.DataAnnotations;

namespace Engram.Pipeline.Cloud;

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

    /// <summary>
    /// Whether a push or pull must come from the device it names, granted the target: its AMQP
    /// <c>user_id</c> (which RabbitMQ checks against the connection's user) must equal its deviceId, and
    /// <c>cloud_device_grants</c> must hold (target, device). Anything else is refused <c>not-authorised</c>.
    /// Turn it off only where every broker account is trusted: the in-memory bus carries no user_id.
    /// </summary>
    public bool AuthoriseDevices { get; set; } = true;

    /// <summary>Batches one process works on at once (each holds a database connection).</summary>
    [Range(1, 256)]
    public int ConcurrentMessageLimit { get; set; } = 8;
}
