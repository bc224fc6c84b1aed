using System.ComponentModel.DataAnnotations;

namespace Engram.Pipeline.DeviceSync;

/// <summary>Which device this Engram database is, and which of its projects it syncs.</summary>
public sealed class DeviceOptions
{
    public const string Section = "Device";

    /// <summary>
    /// The device id. Optional: the first start on a database makes one and keeps it there. When set, it must match
    /// the id the database already holds.
    /// </summary>
    [MaxLength(200)]
    public string? Id { get; set; }

    /// <summary>
    /// One project to sync instead of every project enrolled in Engram's sync (<c>sync_enrolled_projects</c>),
    /// normalised as upstream normalises a project name (trimmed, lower case, runs of <c>-</c> and <c>_</c> collapsed).
    /// </summary>
    [MaxLength(200)]
    public string? Target { get; set; }
}

/// <summary>How the journal is shipped to the cloud.</summary>
public sealed class PublisherOptions
{
    public const string Section = "Publisher";

    /// <summary>Most mutations in one PushMutations; keep at or below the cloud's limit.</summary>
    [Range(1, 100_000)]
    public int MaxBatchMutations { get; set; } = 500;

    /// <summary>Most payload bytes (UTF-8) in one PushMutations of several mutations.</summary>
    [Range(1, int.MaxValue)]
    public int MaxBatchBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>Batches sent and not yet answered.</summary>
    [Range(1, 1024)]
    public int MaxBatchesInFlight { get; set; } = 4;

    /// <summary>
    /// A batch unanswered for this long is sent again, with everything after it; a send the broker has not
    /// confirmed by then is given up and everything unanswered sent again.
    /// </summary>
    public TimeSpan ResendAfter { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How often the journal is checked for rows written by other processes.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>How other devices' changes are brought in.</summary>
public sealed class PullerOptions
{
    public const string Section = "Puller";

    /// <summary>Rows asked for per page.</summary>
    [Range(1, 100_000)]
    public int PageSize { get; set; } = 1000;

    /// <summary>Pull this often even when no TargetAdvanced arrives.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A page request unanswered for this long is asked again.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>When the device reports itself unwell.</summary>
public sealed class HealthOptions
{
    public const string Section = "Health";

    /// <summary>Cursor lag (head − cursor) above which the device reports Degraded.</summary>
    [Range(0, long.MaxValue)]
    public long MaxLag { get; set; } = 10_000;
}
