namespace Engram.Pipeline.Testing;

/// <summary>
/// A Docker engine and the images a test needs, on any machine the tests run on: the engine that answers, else one
/// started by <c>infra/containers/engine.sh</c>; an image that is there, else pulled, else (no registry answers)
/// built as a local stand-in by <c>infra/containers/local-images.sh</c>. Test processes running side by side take
/// turns through a lock file, so that one engine starts and each stand-in is built once.
/// </summary>
public static class DockerEngine
{
    /// <summary>The public images the deployment and the Testcontainers fixtures use; <c>local-images.sh</c> builds all four.</summary>
    public static readonly IReadOnlyList<string> BaseImages =
        ["mcr.microsoft.com/dotnet/sdk:10.0", "mcr.microsoft.com/dotnet/aspnet:10.0", "postgres:15", "rabbitmq:3-management"];

    private static readonly string Scripts = Path.Combine(RepositoryRoot.Find(), "infra", "containers");
    private static readonly string LockFile = Path.Combine(Path.GetTempPath(), "engram-pipeline-docker.lock");

    /// <summary>Whether an engine answers now, without starting one.</summary>
    public static async Task<bool> AnswersAsync() =>
        (await ProgramRunner.RunAsync("docker", ["info", "--format", "{{.ServerVersion}}"], TimeSpan.FromSeconds(20))).ExitCode == 0;

    /// <summary>Makes sure an engine answers, starting one when none does.</summary>
    /// <exception cref="InvalidOperationException">No engine answers and none could be started; the message says why.</exception>
    public static async Task EnsureRunningAsync()
    {
        if (await AnswersAsync())
        {
            return;
        }
        var start = await LockedAsync(Path.Combine(Scripts, "engine.sh"), ["start"], TimeSpan.FromMinutes(5));
        if (start.ExitCode != 0 || !await AnswersAsync())
        {
            throw new InvalidOperationException(
                $"No Docker engine answers and infra/containers/engine.sh could not start one ({start.Describe()}): {Tail(start.Output)}");
        }
    }

    /// <summary>
    /// Readies Testcontainers for this engine, before anything of Testcontainers is used: it speaks the engine's own
    /// API version (its client's default, 1.44, is too new for Debian's engine, 20.10, which speaks 1.41), and runs
    /// without its resource reaper, an image of its own that no registry may give (the fixtures remove their containers).
    /// </summary>
    public static async Task ConfigureTestcontainersAsync()
    {
        if (Environment.GetEnvironmentVariable("DOCKER_API_VERSION") is null)
        {
            var version = await ProgramRunner.RunAsync("docker", ["version", "--format", "{{.Server.APIVersion}}"], TimeSpan.FromSeconds(20));
            if (version.ExitCode == 0)
            {
                Environment.SetEnvironmentVariable("DOCKER_API_VERSION", version.Stdout.Trim());
            }
        }
        Environment.SetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED", "true");
    }

    /// <summary>Whether <paramref name="image"/> is on the engine.</summary>
    public static async Task<bool> HasImageAsync(string image) =>
        (await ProgramRunner.RunAsync("docker", ["image", "inspect", "--format", "{{.Id}}", image], TimeSpan.FromSeconds(20))).ExitCode == 0;

    /// <summary>
    /// Makes sure the <see cref="BaseImages"/> are on the engine: pulled where a registry answers, else built as stand-ins.
    /// </summary>
    /// <exception cref="InvalidOperationException">An image is neither there nor could be pulled or built.</exception>
    public static async Task EnsureBaseImagesAsync()
    {
        var missing = new List<string>();
        foreach (var image in BaseImages)
        {
            if (!await HasImageAsync(image)
                && (await ProgramRunner.RunAsync("docker", ["pull", "-q", image], TimeSpan.FromMinutes(5))).ExitCode != 0)
            {
                missing.Add(image);
            }
        }
        if (missing.Count == 0)
        {
            return;
        }
        var build = await LockedAsync(Path.Combine(Scripts, "local-images.sh"), [], TimeSpan.FromMinutes(15));
        foreach (var image in missing)
        {
            if (!await HasImageAsync(image))
            {
                throw new InvalidOperationException(
                    $"{image} is not on the engine, no registry gave it, and infra/containers/local-images.sh did not build it " +
                    $"({build.Describe()}): {Tail(build.Output)}");
            }
        }
    }

    /// <summary>Runs a script of <c>infra/containers</c> holding the lock that serialises them across processes.</summary>
    private static Task<ProgramResult> LockedAsync(string script, IReadOnlyList<string> arguments, TimeSpan timeout) =>
        // -o: the engine that engine.sh leaves running must not inherit the lock.
        ProgramRunner.RunAsync("flock", ["-o", LockFile, "bash", script, .. arguments], timeout);

    private static string Tail(string output) => output.Length <= 2_000 ? output : output[^2_000..];
}
