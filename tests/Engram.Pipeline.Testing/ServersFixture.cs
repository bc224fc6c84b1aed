using System.Security.Cryptography;
using Xunit;

namespace Engram.Pipeline.Testing;

/// <summary>
/// xunit fixture owning one <see cref="TestServers"/> for a test collection. A test project declares
/// <c>[CollectionDefinition(ServersFixture.Collection)] public sealed class ServersCollection : ICollectionFixture&lt;ServersFixture&gt;;</c>
/// and marks its test classes <c>[Collection(ServersFixture.Collection)]</c>; each class then creates its own
/// virtual host and database, named with <see cref="UniqueName"/>.
/// </summary>
public sealed class ServersFixture : IAsyncLifetime
{
    /// <summary>Name of the test collection that shares the servers.</summary>
    public const string Collection = "servers";

    private TestServers? _servers;

    /// <summary>The servers; available once xunit has initialized the fixture.</summary>
    public TestServers Servers => _servers ?? throw new InvalidOperationException("The fixture has not been initialized.");

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
    public async Task InitializeAsync() => _servers = await TestServers.StartAsync();

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_servers is not null)
        {
            await _servers.DisposeAsync();
        }
    }
}
