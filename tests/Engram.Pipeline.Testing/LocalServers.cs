namespace Engram.Pipeline.Testing;

/// <summary>
/// Private RabbitMQ and PostgreSQL servers run from the locally installed binaries by
/// <c>infra/local/up.sh</c>, with all their state in a temporary directory.
/// </summary>
internal sealed class LocalServers : IAsyncDisposable
{
    private static readonly TimeSpan _scriptTimeout = TimeSpan.FromSeconds(120);

    private readonly string _scriptsDirectory;
    private readonly string _stateDirectory;

    private readonly Dictionary<string, string> _environment;

    private LocalServers(string scriptsDirectory, string stateDirectory, Dictionary<string, string> environment)
    {
        _scriptsDirectory = scriptsDirectory;
        _stateDirectory = stateDirectory;
        _environment = environment;
    }

    /// <summary>Locates the scripts and creates the (still empty) state directory.</summary>
    /// <param name="consumerTimeout">The broker's delivery acknowledgement timeout, when not its default.</param>
    public static LocalServers Create(TimeSpan? consumerTimeout = null)
    {
        var scripts = Path.Combine(RepositoryRoot.Find(), "infra", "local");
        var environment = new Dictionary<string, string>();
        if (consumerTimeout is { } timeout)
        {
            environment["ENGRAM_RABBITMQ_CONSUMER_TIMEOUT_MS"] = ((long)timeout.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        return new LocalServers(scripts, Directory.CreateTempSubdirectory("engram-servers-").FullName, environment);
    }

    /// <summary>Stops one server (<c>rabbitmq</c> or <c>postgres</c>, keeping its data) with down.sh.</summary>
    public async Task StopAsync(string server)
    {
        var down = await ProgramRunner.RunScriptAsync(Path.Combine(_scriptsDirectory, "down.sh"), [_stateDirectory, server], _scriptTimeout);
        if (down.ExitCode != 0)
        {
            throw new InvalidOperationException($"down.sh {_stateDirectory} {server} failed ({down.Describe()}):{Environment.NewLine}{down.Output}");
        }
    }

    /// <summary>Runs <c>rabbitmqctl</c> on the private node, with the node's own environment (node name, cookie).</summary>
    public async Task RabbitMqCtlAsync(IReadOnlyList<string> arguments)
    {
        var ctl = await ProgramRunner.RunAsync("bash",
            ["-c", """. "$0/node.env" && exec /usr/lib/rabbitmq/bin/rabbitmqctl -q "$@" """, Path.Combine(_stateDirectory, "rabbitmq"), .. arguments],
            _scriptTimeout);
        if (ctl.ExitCode != 0)
        {
            throw new InvalidOperationException($"rabbitmqctl {string.Join(' ', arguments)} failed ({ctl.Describe()}):{Environment.NewLine}{ctl.Output}");
        }
    }

    /// <summary>Runs up.sh (which starts whichever server is stopped) and reads the endpoints from the env file it writes.</summary>
    public async Task<ServerEndpoints> UpAsync()
    {
        var up = await ProgramRunner.RunScriptAsync(Path.Combine(_scriptsDirectory, "up.sh"), [_stateDirectory], _scriptTimeout, _environment);
        if (up.ExitCode != 0)
        {
            throw new InvalidOperationException($"up.sh {_stateDirectory} failed ({up.Describe()}):{Environment.NewLine}{up.Output}");
        }

        var variables = await ReadEnvFileAsync(Path.Combine(_stateDirectory, "env"));
        string Get(string name) => variables.TryGetValue(name, out var value)
            ? value
            : throw new InvalidOperationException($"up.sh did not write {name} to {_stateDirectory}/env.");

        return new ServerEndpoints(
            new Uri(Get("RabbitMq__Uri")),
            new Uri(Get("ENGRAM_RABBITMQ_MANAGEMENT")),
            Get("ENGRAM_PG_ADMIN"));
    }

    /// <summary>Runs down.sh --purge, which stops both servers and deletes the state directory.</summary>
    public async ValueTask DisposeAsync()
    {
        var down = await ProgramRunner.RunScriptAsync(
            Path.Combine(_scriptsDirectory, "down.sh"), [_stateDirectory, "--purge"], _scriptTimeout);
        if (Directory.Exists(_stateDirectory))
        {
            Directory.Delete(_stateDirectory, recursive: true);
        }

        if (down.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"down.sh {_stateDirectory} --purge failed ({down.Describe()}); servers may still be running:"
                + Environment.NewLine + down.Output);
        }
    }

    /// <summary>Parses the <c>export NAME='value'</c> lines that up.sh and cluster-up.sh write.</summary>
    internal static async Task<Dictionary<string, string>> ReadEnvFileAsync(string path)
    {
        const string Export = "export ";
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in await File.ReadAllLinesAsync(path))
        {
            if (line.StartsWith(Export, StringComparison.Ordinal) && line.IndexOf('=', StringComparison.Ordinal) is var equals and > 0)
            {
                variables[line[Export.Length..equals]] = line[(equals + 1)..].Trim('\'');
            }
        }

        return variables;
    }
}
