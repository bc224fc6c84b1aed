using System.ComponentModel.DataAnnotations;

namespace Engram.Pipeline.Hosting;

/// <summary>
/// Where the broker is: <c>RabbitMq__Uri=amqp://user:pass@host:port/vhost</c>. An <c>amqps://</c> URI
/// connects over TLS on any port, checking the broker's certificate against the system's trusted roots
/// and the URI's host name; a client certificate is optional.
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
}
