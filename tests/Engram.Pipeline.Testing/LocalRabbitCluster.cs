using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Engram.Pipeline.Testing;

/// <summary>One node of a <see cref="LocalRabbitCluster"/>.</summary>
/// <param name="Number">1-based, as cluster-up.sh numbers them.</param>
/// <param name="Name">The Erlang node name, as RabbitMQ reports it (e.g. a quorum queue's leader).</param>
/// <param name="Amqp">Where its AMQP listener is, <c>host:port</c>.</param>
/// <param name="ManagementUri">Its management HTTP API (no credentials).</param>
public sealed record RabbitNode(int Number, string Name, string Amqp, Uri ManagementUri);

/// <summary>
/// A private RabbitMQ cluster run from the locally installed binaries by <c>infra/local/cluster-up.sh</c>,
/// with all its state in a temporary directory. Disposing stops it and deletes the state.
/// </summary>
public sealed class LocalRabbitCluster : IAsyncDisposable
{
    private static readonly TimeSpan _scriptTimeout = TimeSpan.FromMinutes(3);

    private readonly string _scriptsDirectory;
    private readonly string _stateDirectory;
    private readonly HttpClient _management;

    private LocalRabbitCluster(string scriptsDirectory, string stateDirectory, Uri rabbitMqUri, IReadOnlyList<RabbitNode> nodes,
        string user, string password)
    {
        _scriptsDirectory = scriptsDirectory;
        _stateDirectory = stateDirectory;
        RabbitMqUri = rabbitMqUri;
        Nodes = nodes;
        _management = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        _management.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));
    }

    /// <summary>AMQP URI of node 1's default virtual host, with the administrator's credentials.</summary>
    public Uri RabbitMqUri { get; }

    public IReadOnlyList<RabbitNode> Nodes { get; }

    /// <summary>Starts a cluster of <paramref name="nodes"/> nodes and waits until all of them have joined.</summary>
    /// <exception cref="InvalidOperationException">cluster-up.sh failed; the message has its output.</exception>
    public static async Task<LocalRabbitCluster> StartAsync(int nodes)
    {
        var scripts = Path.Combine(RepositoryRoot.Find(), "infra", "local");
        var state = Directory.CreateTempSubdirectory("engram-cluster-").FullName;
        var up = await ProgramRunner.RunScriptAsync(Path.Combine(scripts, "cluster-up.sh"), [state, nodes.ToString(CultureInfo.InvariantCulture)], _scriptTimeout);
        if (up.ExitCode != 0)
        {
            await StopAsync(scripts, state);
            throw new InvalidOperationException($"cluster-up.sh {state} {nodes} failed ({up.Describe()}):{Environment.NewLine}{up.Output}");
        }

        var variables = await LocalServers.ReadEnvFileAsync(Path.Combine(state, "env"));
        string[] Get(string name) => variables.TryGetValue(name, out var value)
            ? value.Split(' ')
            : throw new InvalidOperationException($"cluster-up.sh did not write {name} to {state}/env.");
        var (names, amqp, management) = (Get("ENGRAM_RABBITMQ_NODES"), Get("ENGRAM_RABBITMQ_AMQP_PORTS"), Get("ENGRAM_RABBITMQ_MANAGEMENT_PORTS"));
        var members = names.Select((name, i) => new RabbitNode(i + 1, name, $"127.0.0.1:{amqp[i]}", new Uri($"http://127.0.0.1:{management[i]}/")))
            .ToList();
        return new LocalRabbitCluster(scripts, state, new Uri(Get("RabbitMq__Uri")[0]), members,
            Get("ENGRAM_RABBITMQ_USER")[0], Get("ENGRAM_RABBITMQ_PASSWORD")[0]);
    }

    /// <summary>GETs a management API path (e.g. <c>api/queues/%2F</c>) from one node and parses the JSON answer.</summary>
    public async Task<JsonDocument> GetManagementAsync(RabbitNode node, string path)
    {
        using var response = await _management.GetAsync(new Uri(node.ManagementUri, path));
        await TestServers.EnsureSuccessAsync(response, $"GET {path} from {node.Name}");
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>Kills one node (SIGKILL, as a crash would); the others keep running.</summary>
    public async Task KillAsync(RabbitNode node)
    {
        var kill = await ProgramRunner.RunScriptAsync(Path.Combine(_scriptsDirectory, "cluster-down.sh"),
            [_stateDirectory, "--kill-node", node.Number.ToString(CultureInfo.InvariantCulture)], _scriptTimeout);
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"cluster-down.sh --kill-node {node.Number} failed ({kill.Describe()}):{Environment.NewLine}{kill.Output}");
        }
    }

    /// <summary>Moves a quorum queue's leader to <paramref name="to"/>, as RabbitMQ's own leader rebalancing does.</summary>
    public async Task TransferLeadershipAsync(string queue, RabbitNode to)
    {
        var transfer = await ProgramRunner.RunAsync("bash",
            ["-c", """. "$0/node.env" && exec /usr/lib/rabbitmq/bin/rabbitmqctl -q eval "$1" """, Path.Combine(_stateDirectory, $"node{to.Number}"),
                $"{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"{queue}\">>)), rabbit_quorum_queue:transfer_leadership(Q, node())."],
            _scriptTimeout);
        if (transfer.ExitCode != 0 || !transfer.Stdout.Contains("migrated", StringComparison.Ordinal) || transfer.Stdout.Contains("not_migrated", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"Moving {queue}'s leader to {to.Name} failed ({transfer.Describe()}):{Environment.NewLine}{transfer.Output}");
        }
    }

    /// <summary>Stops every node and deletes the state directory.</summary>
    public async ValueTask DisposeAsync()
    {
        _management.Dispose();
        await StopAsync(_scriptsDirectory, _stateDirectory);
    }

    private static async Task StopAsync(string scripts, string state)
    {
        var down = await ProgramRunner.RunScriptAsync(Path.Combine(scripts, "cluster-down.sh"), [state, "--purge"], _scriptTimeout);
        if (Directory.Exists(state))
        {
            Directory.Delete(state, recursive: true);
        }
        if (down.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"cluster-down.sh {state} --purge failed ({down.Describe()}); nodes may still be running:{Environment.NewLine}{down.Output}");
        }
    }
}
