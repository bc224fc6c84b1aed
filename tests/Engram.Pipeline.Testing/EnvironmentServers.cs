namespace Engram.Pipeline.Testing;

/// <summary>Existing servers named by environment variables.</summary>
internal static class EnvironmentServers
{
    private const string RabbitMqUriVariable = "ENGRAM_TEST_RABBITMQ_URI";
    private const string ManagementUriVariable = "ENGRAM_TEST_RABBITMQ_MANAGEMENT_URI";
    private const string CloudDbVariable = "ENGRAM_TEST_CLOUDDB";

    public static string Description => $"{RabbitMqUriVariable}, {ManagementUriVariable} and {CloudDbVariable}";

    /// <summary>The variables that name <paramref name="endpoints"/>, for a program of the repository to use the same servers.</summary>
    public static Dictionary<string, string> Variables(ServerEndpoints endpoints) => new()
    {
        [RabbitMqUriVariable] = endpoints.RabbitMqUri.ToString(),
        [ManagementUriVariable] = endpoints.ManagementUri.ToString(),
        [CloudDbVariable] = endpoints.CloudDbAdminConnectionString,
    };

    /// <summary>Reads the variables; null when none is set.</summary>
    /// <exception cref="InvalidOperationException">Only some are set, or a URI is malformed.</exception>
    public static ServerEndpoints? TryRead()
    {
        var rabbitMq = Environment.GetEnvironmentVariable(RabbitMqUriVariable);
        var management = Environment.GetEnvironmentVariable(ManagementUriVariable);
        var cloudDb = Environment.GetEnvironmentVariable(CloudDbVariable);
        if (string.IsNullOrEmpty(rabbitMq) && string.IsNullOrEmpty(management) && string.IsNullOrEmpty(cloudDb))
        {
            return null;
        }

        if (string.IsNullOrEmpty(rabbitMq) || string.IsNullOrEmpty(management) || string.IsNullOrEmpty(cloudDb))
        {
            throw new InvalidOperationException($"Set all of {Description}, or none of them.");
        }

        var rabbitMqUri = ParseUri(RabbitMqUriVariable, rabbitMq);
        if (string.IsNullOrEmpty(rabbitMqUri.UserInfo))
        {
            throw new InvalidOperationException($"{RabbitMqUriVariable} must include the administrator's user and password.");
        }

        // Without a trailing slash, relative API paths would replace the URI's last segment.
        var managementUri = ParseUri(ManagementUriVariable, management.EndsWith('/') ? management : management + "/");
        return new ServerEndpoints(rabbitMqUri, managementUri, cloudDb);
    }

    private static Uri ParseUri(string variable, string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri)
            ? uri
            : throw new InvalidOperationException($"{variable} is not an absolute URI: '{value}'.");
}
