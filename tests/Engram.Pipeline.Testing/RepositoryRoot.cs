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
}
