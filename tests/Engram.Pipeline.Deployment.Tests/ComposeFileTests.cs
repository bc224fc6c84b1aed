using System.Diagnostics;
using System.Reflection;
using Engram.Pipeline.CloudIngest;
using Engram.Pipeline.Device;
using Engram.Pipeline.Hosting;
using Engram.Pipeline.Testing;
using YamlDotNet.RepresentationModel;

namespace Engram.Pipeline.Deployment.Tests;

/// <summary>
/// docker-compose.yml, resolved by a real compose parser (Debian's docker-compose; no engine is
/// needed for <c>config</c>), checked against what the executables actually read.
/// </summary>
public sealed class When_docker_compose_reads_the_deployment
{
    private static readonly string Root = RepositoryRoot.Find();

    private static readonly Dictionary<string, (Assembly Service, string[] Required)> AppServices = new()
    {
        ["cloud-ingest"] = (typeof(CloudIngestServices).Assembly, ["RabbitMq:Uri", "ConnectionStrings:CloudDb"]),
        ["device-a"] = (typeof(DeviceServices).Assembly, ["RabbitMq:Uri", "ConnectionStrings:DeviceDb", "Device:Id", "Device:Target"]),
        ["device-b"] = (typeof(DeviceServices).Assembly, ["RabbitMq:Uri", "ConnectionStrings:DeviceDb", "Device:Id", "Device:Target"]),
    };

    /// <summary>The one-shot job that makes the devices' broker accounts: it runs to completion instead of staying healthy.</summary>
    private const string Provision = "provision";

    [Fact]
    public async Task Every_service_has_a_health_check_and_starts_after_what_it_needs_is_healthy()
    {
        var services = await ResolvedServicesAsync();

        Assert.Equal(["cloud-ingest", "device-a", "device-b", "postgres", Provision, "rabbitmq"], services.Keys.Order());
        foreach (var (name, service) in services)
        {
            Assert.True(name == Provision || service.Children.ContainsKey("healthcheck"), $"{name} has no healthcheck");
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
        foreach (var (name, (assembly, required)) in AppServices)
        {
            var environment = ((YamlMappingNode)services[name]["environment"]).Children
                .ToDictionary(e => ((YamlScalarNode)e.Key).Value!.Replace("__", ":", StringComparison.Ordinal), e => ((YamlScalarNode)e.Value).Value);
            var known = KnownSettings(assembly);
            var unknown = environment.Keys.Where(key => !known.Contains(key)).ToList();
            Assert.True(unknown.Count == 0, $"{name} sets settings nothing reads: {string.Join(", ", unknown)}");
            var missing = required.Where(key => string.IsNullOrWhiteSpace(environment.GetValueOrDefault(key))).ToList();
            Assert.True(missing.Count == 0, $"{name} lacks {string.Join(", ", missing)}");
            Assert.DoesNotContain("guest", environment["RabbitMq:Uri"], StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Each_health_check_and_image_runs_the_services_own_executable()
    {
        var services = await ResolvedServicesAsync();
        foreach (var (name, (assembly, _)) in AppServices)
        {
            var dll = assembly.GetName().Name + ".dll";
            var test = ((YamlSequenceNode)services[name]["healthcheck"]["test"]).Children.Select(n => ((YamlScalarNode)n).Value).ToList();
            Assert.Equal(["CMD", "dotnet", dll, "probe"], test);
            var dockerfile = ((YamlScalarNode)services[name]["build"]["dockerfile"]).Value!;
            var text = await File.ReadAllTextAsync(Path.Combine(Root, dockerfile));
            Assert.Contains($"ENTRYPOINT [\"dotnet\", \"{dll}\"]", text, StringComparison.Ordinal);
            Assert.Contains($"dotnet publish services/{assembly.GetName().Name}", text, StringComparison.Ordinal);
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

        // The image's own defaults let guest in from anywhere; the deployment's configuration takes that back.
        var rabbitConf = Assert.Single(Mounts(services["rabbitmq"]), m => m.Target.StartsWith("/etc/rabbitmq/conf.d/", StringComparison.Ordinal));
        Assert.Contains("loopback_users.guest = true", await File.ReadAllTextAsync(rabbitConf.Source), StringComparison.Ordinal);
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
