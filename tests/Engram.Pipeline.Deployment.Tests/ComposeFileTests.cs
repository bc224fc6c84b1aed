using System.Diagnostics;
using System.Reflection;
using Engram.Pipeline.Cloud;
using Engram.Pipeline.DeviceSync;
using Engram.Pipeline.Hosting;
using Engram.Pipeline.Testing;
using YamlDotNet.RepresentationModel;

namespace Engram.Pipeline.Deployment.Tests;

/// <summary>
/// docker-compose.yml, resolved by a real compose parser (Debian's docker-compose; no engine is
/// needed for <c>config</c>), and the Dockerfile it builds from, checked against what the executables actually read.
/// </summary>
public sealed class When_docker_compose_reads_the_deployment
{
    private static readonly string Root = RepositoryRoot.Find();

    /// <summary>Each long-running service of ours: the executable its image runs, the library whose settings it reads, what it needs.</summary>
    private static readonly Dictionary<string, (string Executable, Assembly Library, string[] Required)> AppServices = new()
    {
        ["cloud-ingest"] = ("Engram.Pipeline.CloudIngest", typeof(CloudIngestServices).Assembly, ["RabbitMq:Uri", "ConnectionStrings:CloudDb"]),
        ["device-a"] = ("Engram.Pipeline.Device", typeof(DeviceServices).Assembly,
            ["RabbitMq:Uri", "ConnectionStrings:DeviceDb", "Device:Id", "Device:Target"]),
        ["device-b"] = ("Engram.Pipeline.Device", typeof(DeviceServices).Assembly,
            ["RabbitMq:Uri", "ConnectionStrings:DeviceDb", "Device:Id", "Device:Target"]),
    };

    /// <summary>The one-shot job that makes the devices' broker accounts: it runs to completion instead of staying healthy.</summary>
    private const string Provision = "provision";

    [Fact]
    public async Task Every_service_has_a_health_check_and_starts_after_what_it_needs_is_healthy()
    {
        var services = await ResolvedServicesAsync();

        Assert.Equal(["cloud-ingest", "device-a", "device-b", "postgres", Provision, "rabbitmq"], services.Keys.Order());
        var dockerfile = await DockerfileStagesAsync();
        foreach (var (name, service) in services)
        {
            var imageChecksHealth = Target(service) is { } target && dockerfile[target].Any(line => line.StartsWith("HEALTHCHECK ", StringComparison.Ordinal));
            Assert.True(name == Provision || service.Children.ContainsKey("healthcheck") || imageChecksHealth, $"{name} has no health check");
            if (service.Children.TryGetValue("depends_on", out var dependsOn))
            {
                foreach (var (dependency, condition) in ((YamlMappingNode)dependsOn).Children)
                {
                    var dependencyName = ((YamlScalarNode)dependency).Value!;
                    Assert.Equal(dependencyName == Provision ? "service_completed_successfully" : "service_healthy",
                        ((YamlScalarNode)((YamlMappingNode)condition)["condition"]).Value);
                    Assert.True(services.ContainsKey(dependencyName), $"{name} depends on unknown {dependency}");
                }
            }
        }
        Assert.Equal("no", ((YamlScalarNode)services[Provision]["restart"]).Value);
        Assert.All(AppServices.Keys, name => Assert.True(services[name].Children.ContainsKey("depends_on"), $"{name} waits for nothing"));
    }

    [Fact]
    public async Task The_app_services_set_only_settings_the_executables_read_and_every_one_they_need()
    {
        var services = await ResolvedServicesAsync();
        foreach (var (name, (_, library, required)) in AppServices)
        {
            var environment = ((YamlMappingNode)services[name]["environment"]).Children
                .ToDictionary(e => ((YamlScalarNode)e.Key).Value!.Replace("__", ":", StringComparison.Ordinal), e => ((YamlScalarNode)e.Value).Value);
            var known = KnownSettings(library);
            var unknown = environment.Keys.Where(key => !known.Contains(key)).ToList();
            Assert.True(unknown.Count == 0, $"{name} sets settings nothing reads: {string.Join(", ", unknown)}");
            var missing = required.Where(key => string.IsNullOrWhiteSpace(environment.GetValueOrDefault(key))).ToList();
            Assert.True(missing.Count == 0, $"{name} lacks {string.Join(", ", missing)}");
            Assert.DoesNotContain("guest", environment["RabbitMq:Uri"], StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Each_image_runs_its_services_own_executable_as_a_non_root_user_on_aspnet_and_checks_its_health_with_it()
    {
        var services = await ResolvedServicesAsync();
        var dockerfile = await DockerfileStagesAsync();
        Assert.Equal("FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime", dockerfile["runtime"][0]);
        Assert.Contains("USER app", dockerfile["runtime"]);
        foreach (var (name, (executable, _, _)) in AppServices.Append(new(Provision, ("engram-pipeline", typeof(CloudIngestServices).Assembly, []))))
        {
            var target = Target(services[name]) ?? throw new InvalidOperationException($"{name} builds no target of the Dockerfile");
            var stage = dockerfile[target];
            Assert.Equal($"FROM runtime AS {target}", stage[0]);
            Assert.Contains($"ENTRYPOINT [\"dotnet\", \"{executable}.dll\"]", stage);
            Assert.Equal(name != Provision,
                stage.Any(line => line.StartsWith("HEALTHCHECK ", StringComparison.Ordinal) && line.EndsWith($"CMD [\"dotnet\", \"{executable}.dll\", \"probe\"]", StringComparison.Ordinal)));
        }
        foreach (var host in new[] { "Engram.Pipeline.CloudIngest", "Engram.Pipeline.Device", "Engram.Pipeline.Cli" })
        {
            Assert.Contains(dockerfile["build"], line => line.Contains($"dotnet publish services/{host} ", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Data_lives_in_named_volumes_and_no_secret_is_in_the_repository()
    {
        var services = await ResolvedServicesAsync();
        foreach (var name in new[] { "postgres", "rabbitmq", "device-a", "device-b" })
        {
            // docker-compose 1.x resolves mounts to the short form "source:target:mode".
            var mount = ((YamlScalarNode)((YamlSequenceNode)services[name]["volumes"]).Children[0]).Value!;
            var source = mount.Split(':')[0];
            Assert.False(source.StartsWith('.') || source.StartsWith('/'), $"{name} mounts a host path, not a named volume: {mount}");
        }
        var compose = await File.ReadAllTextAsync(Path.Combine(Root, "docker-compose.yml"));
        Assert.DoesNotContain("change-me", compose, StringComparison.Ordinal);
        Assert.Contains("${RABBITMQ_PASSWORD:?", compose, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Each_device_connects_as_its_own_broker_user_and_the_ingest_as_its_own_database_role()
    {
        var services = await ResolvedServicesAsync();
        var provision = string.Join(' ', ((YamlSequenceNode)services[Provision]["command"]).Children.Select(n => ((YamlScalarNode)n).Value));
        foreach (var device in new[] { "device-a", "device-b" })
        {
            var environment = (YamlMappingNode)services[device]["environment"];
            var broker = new Uri(((YamlScalarNode)environment["RabbitMq__Uri"]).Value!);
            Assert.Equal(((YamlScalarNode)environment["Device__Id"]).Value, RabbitMqOptions.UserName(broker));
            Assert.Contains($"device-user add --device {device} ", provision, StringComparison.Ordinal);
            Assert.True(((YamlMappingNode)services[device]["depends_on"]).Children.ContainsKey(Provision), $"{device} starts before its account exists");
        }
        var ingestDb = ((YamlScalarNode)services["cloud-ingest"]["environment"]["ConnectionStrings__CloudDb"]).Value!;
        Assert.Contains("Username=engram_ingest;", ingestDb, StringComparison.Ordinal);
        Assert.Contains(Mounts(services["postgres"]), m => m.Target.StartsWith("/docker-entrypoint-initdb.d/", StringComparison.Ordinal)
            && m.Source.EndsWith("infra/postgres/initdb.sh", StringComparison.Ordinal));

        // The image's own defaults let guest in from anywhere; the deployment's broker image takes that back.
        var brokerImage = ((YamlScalarNode)services["rabbitmq"]["build"]["context"]).Value!;
        Assert.Contains("COPY 20-engram.conf /etc/rabbitmq/conf.d/20-engram.conf", await File.ReadAllLinesAsync(Path.Combine(brokerImage, "Dockerfile")));
        Assert.Contains("loopback_users.guest = true", await File.ReadAllTextAsync(Path.Combine(brokerImage, "20-engram.conf")), StringComparison.Ordinal);
    }

    /// <summary>The Dockerfile target a service builds, if it builds one.</summary>
    private static string? Target(YamlMappingNode service) =>
        service.Children.TryGetValue("build", out var build) && ((YamlMappingNode)build).Children.TryGetValue("target", out var target)
            ? ((YamlScalarNode)target).Value
            : null;

    /// <summary>The repository's Dockerfile, its instructions (comments left out) by stage name, each stage from its FROM line.</summary>
    private static async Task<Dictionary<string, List<string>>> DockerfileStagesAsync()
    {
        var stages = new Dictionary<string, List<string>>();
        var current = new List<string>();
        foreach (var line in (await File.ReadAllLinesAsync(Path.Combine(Root, "Dockerfile"))).Where(l => l.Length > 0 && !l.StartsWith('#')))
        {
            if (line.StartsWith("FROM ", StringComparison.Ordinal))
            {
                current = [];
                stages[line.Split(" AS ")[1]] = current;
            }
            current.Add(line);
        }
        return stages;
    }

    /// <summary>A service's bind mounts, as docker-compose 1.x resolves them ("source:target:mode").</summary>
    private static IEnumerable<(string Source, string Target)> Mounts(YamlMappingNode service) =>
        ((YamlSequenceNode)service["volumes"]).Children.Select(n => ((YamlScalarNode)n).Value!.Split(':'))
            .Where(parts => parts[0].StartsWith('/')).Select(parts => (parts[0], parts[1]));

    /// <summary>
    /// Settings a service reads: every property of the options classes it binds (Section:Property),
    /// its connection strings, and what the host itself reads.
    /// </summary>
    private static HashSet<string> KnownSettings(Assembly service)
    {
        var known = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "Urls", "OTEL_EXPORTER_OTLP_ENDPOINT" };
        foreach (var type in service.GetTypes().Append(typeof(RabbitMqOptions)))
        {
            if (type.GetField("Section", BindingFlags.Public | BindingFlags.Static)?.GetValue(null) is string section)
            {
                known.UnionWith(type.GetProperties().Select(p => $"{section}:{p.Name}"));
            }
        }
        known.Add(service == typeof(CloudIngestServices).Assembly ? "ConnectionStrings:CloudDb" : "ConnectionStrings:DeviceDb");
        return known;
    }

    private static async Task<Dictionary<string, YamlMappingNode>> ResolvedServicesAsync()
    {
        var start = new ProcessStartInfo("docker-compose")
        {
            WorkingDirectory = Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList = { "--file", "docker-compose.yml", "--env-file", ".env.example", "config" },
        };
        using var process = Process.Start(start)
            ?? throw new InvalidOperationException("docker-compose did not start; bash infra/local/install-deps.sh installs it.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
        Assert.True(process.ExitCode == 0, $"docker-compose config failed: {await error}");

        var yaml = new YamlStream();
        yaml.Load(new StringReader(await output));
        var services = (YamlMappingNode)((YamlMappingNode)yaml.Documents[0].RootNode)["services"];
        return services.Children.ToDictionary(s => ((YamlScalarNode)s.Key).Value!, s => (YamlMappingNode)s.Value);
    }
}
