using System.ComponentModel.DataAnnotations;

namespace Engram.Pipeline.Hosting;

/// <summary>How the pipeline's durable queues are declared on the broker.</summary>
public enum QueueType
{
    /// <summary>RabbitMQ's classic queue: it lives on one node and is lost with it.</summary>
    Classic,

    /// <summary>A quorum queue: replicated over the cluster's nodes, available while most of them are.</summary>
    Quorum,
}

/// <summary>
/// Where the broker is: <c>RabbitMq__Uri=amqp://user:pass@host:port/vhost</c>, the other nodes of its
/// cluster, and which kind of queue the pipeline declares. An <c>amqps://</c> URI connects over TLS on
/// any port, checking the broker's certificate against the system's trusted roots and the URI's host
/// name; a client certificate is optional.
/// </summary>
public sealed class RabbitMqOptions : IValidatableObject
{
    public const string Section = "RabbitMq";

    [Required(ErrorMessage = "RabbitMq:Uri is not set (environment variable RabbitMq__Uri, e.g. amqp://user:pass@host:5672/vhost).")]
    public Uri? Uri { get; set; }

    /// <summary>A client certificate (PKCS#12 file) to present over <c>amqps://</c>, for brokers that require one.</summary>
    public string? ClientCertificatePath { get; set; }

    /// <summary>The passphrase of <see cref="ClientCertificatePath"/>, if it has one.</summary>
    public string? ClientCertificatePassphrase { get; set; }

    /// <summary>
    /// The other nodes of the broker's cluster, <c>host</c> or <c>host:port</c>, comma-separated. The bus
    /// connects to the URI's node first and, whenever its connection fails, to the next node in turn.
    /// </summary>
    public string? ClusterNodes { get; set; }

    /// <summary>
    /// The type of <c>engram-push</c>, <c>engram-pull</c>, <c>engram-device-{id}</c> and their <c>_error</c> queues;
    /// unset, quorum when <see cref="ClusterNodes"/> names other nodes and classic otherwise (<see cref="QueueTypeInUse"/>).
    /// A queue that exists keeps its type: changing it means deleting the queue (see the README).
    /// </summary>
    public QueueType? QueueType { get; set; }

    /// <summary>
    /// The AMQP heartbeat: a connection that has heard nothing from its node for about twice this long is
    /// closed and made again. The socket does not always tell the client that its node has died.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00", ErrorMessage = "RabbitMq:Heartbeat must be between 00:00:01 and 00:10:00.")]
    public TimeSpan Heartbeat { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long the bus waits before it connects again after losing its connection (not before the first).
    /// A node that dies takes the leaders of its quorum queues with it, and RabbitMQ 3.10 refuses for good
    /// every publish of a channel whose first publish to such a queue comes before a new leader is in place;
    /// connecting again only after the election keeps the new channels clear of that.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00", ErrorMessage = "RabbitMq:ReconnectDelay must be between 00:00:00 and 00:01:00.")]
    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The configured <see cref="QueueType"/>, or its default.</summary>
    public QueueType QueueTypeInUse() =>
        QueueType ?? (OtherNodes().Any() ? Hosting.QueueType.Quorum : Hosting.QueueType.Classic);

    /// <summary>Every node to connect to, the URI's first, as MassTransit's cluster nodes (<c>host[:port]</c>).</summary>
    public IReadOnlyList<string> Nodes()
    {
        var first = Uri!.IsDefaultPort ? Uri.Host : $"{Uri.Host}:{Uri.Port}";
        return [first, .. OtherNodes()];
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Uri is null)
        {
            yield break;
        }
        if (!Uri.IsAbsoluteUri || Uri.Scheme is not ("amqp" or "amqps"))
        {
            yield return new ValidationResult(
                $"RabbitMq:Uri must be an absolute amqp:// or amqps:// URI, not '{Redacted(Uri)}'.", [nameof(Uri)]);
        }
        else if (string.IsNullOrEmpty(UserName(Uri)) || !Uri.UserInfo.Contains(':', StringComparison.Ordinal))
        {
            // Without them the client would fall back to guest/guest.
            yield return new ValidationResult(
                $"RabbitMq:Uri must name a user and password (amqp://user:pass@host:port/vhost), not '{Redacted(Uri)}'.", [nameof(Uri)]);
        }
        if (ClientCertificatePath is { } certificate && (!Uri.IsAbsoluteUri || Uri.Scheme != "amqps" || !File.Exists(certificate)))
        {
            yield return new ValidationResult(
                $"RabbitMq:ClientCertificatePath needs an amqps:// URI and an existing file, not '{certificate}'.", [nameof(ClientCertificatePath)]);
        }
        foreach (var node in OtherNodes().Where(node => !IsHostAndPort(node)))
        {
            yield return new ValidationResult(
                $"RabbitMq:ClusterNodes takes host or host:port, comma-separated; '{node}' is neither.", [nameof(ClusterNodes)]);
        }
        if (QueueType is { } type && !Enum.IsDefined(type))
        {
            yield return new ValidationResult(
                $"RabbitMq:QueueType must be {string.Join(" or ", Enum.GetNames<QueueType>())}, not '{type}'.", [nameof(QueueType)]);
        }
    }

    /// <summary>The user name in an <c>amqp://user:pass@…</c> URI, as RabbitMQ authenticates it.</summary>
    public static string UserName(Uri uri) => Uri.UnescapeDataString(uri.UserInfo.Split(':')[0]);

    /// <summary>The URI without its password, for logs and error messages.</summary>
    public static string Redacted(Uri uri)
    {
        if (!uri.IsAbsoluteUri || string.IsNullOrEmpty(uri.UserInfo))
        {
            return uri.ToString();
        }
        var user = uri.UserInfo.Split(':')[0];
        return new UriBuilder(uri) { UserName = user, Password = "***" }.Uri.ToString();
    }

    private IEnumerable<string> OtherNodes() =>
        (ClusterNodes ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    private static bool IsHostAndPort(string node)
    {
        var parts = node.Split(':');
        return Uri.CheckHostName(parts[0]) != UriHostNameType.Unknown
            && (parts.Length == 1 || (parts.Length == 2 && ushort.TryParse(parts[1], out var port) && port > 0));
    }
}
