using System.Security.Cryptography;
using Xunit;

namespace Engram.Pipeline.Testing;

/// <summary>
/// xunit fixture owning one <see cref="TestServers"/> for a test collection, started on first use, so that a run of
/// only the tests that need no server (the embedded backend, say) starts none. A test project declares
/// <c>[CollectionDefinition(ServersFixture.Collection)] public sealed class ServersCollection : ICollectionFixture&lt;ServersFixture&gt;;</c>
/// and marks its test classes <c>[Collection(ServersFixture.Collection)]</c>; each class then creates its own
/// virtual host and database, named with <see cref="UniqueName"/>.
/// </summary>
public sealed class ServersFixture : IAsyncLifetime
{
    /// <summary>Name of the test collection that shares the servers.</summary>
    public const string Collection = "servers";

    private readonly Lazy<Task<TestServers>> _servers = new(TestServers.StartAsync);

    /// <summary>The servers, started by the first caller.</summary>
    public Task<TestServers> GetAsync() => _servers.Value;

    /// <summary>
    /// A short lowercase name, valid as both a RabbitMQ virtual host and an unquoted PostgreSQL
    /// identifier: <paramref name="prefix"/>, an underscore and 8 random hex digits.
    /// </summary>
    /// <param name="prefix">Lowercase ASCII letters, digits and underscores, starting with a letter; at most 40 characters.</param>
    public static string UniqueName(string prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        if (prefix.Length > 40 || !char.IsAsciiLetterLower(prefix[0])
            || !prefix.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_'))
        {
            throw new ArgumentException(
                "Use at most 40 lowercase ASCII letters, digits and underscores, starting with a letter.", nameof(prefix));
        }

        return $"{prefix}_{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
    }

    /// <inheritdoc />
    public Task InitializeAsync() => Task.CompletedTask;

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_servers.IsValueCreated)
        {
            await (await _servers.Value).DisposeAsync();
        }
    }
}
