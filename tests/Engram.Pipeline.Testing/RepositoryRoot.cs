namespace Engram.Pipeline.Testing;

/// <summary>Where the repository is, for tests that read its files or run its scripts.</summary>
public static class RepositoryRoot
{
    private const string SolutionFile = "Engram.Pipeline.sln";

    /// <summary>The folder holding the solution, above the test binaries or else above the working directory.</summary>
    public static string Find()
    {
        string[] starts = [AppContext.BaseDirectory, Environment.CurrentDirectory];
        foreach (var start in starts)
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, SolutionFile)))
                {
                    return directory.FullName;
                }
            }
        }

        throw new InvalidOperationException($"No {SolutionFile} found in or above {string.Join(" or ", starts)}.");
    }

    /// <summary>
    /// The built <c>.dll</c> of one of the repository's programs (<paramref name="projectDirectory"/> relative to the root), in
    /// the configuration these tests were built in: building the solution builds it.
    /// </summary>
    public static string BuiltAssembly(string projectDirectory, string assemblyName)
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}",
            StringComparison.Ordinal) ? "Release" : "Debug";
        var dll = Path.Combine(Find(), projectDirectory, "bin", configuration, "net10.0", assemblyName + ".dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"{dll} is not built; build the solution first.", dll);
    }
}
