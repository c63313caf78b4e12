namespace StreamInference.IntegrationTests;

/// <summary>The <c>streaminference</c> CLI built next to this test assembly's configuration (the project reference builds it first).</summary>
public static class TestCli
{
    /// <summary>The variables the CLI reads its settings from besides STREAMINFERENCE__Section__Key.</summary>
    public static readonly string[] WellKnownVariables = ["KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "REDIS_URL"];

    /// <summary>streaminference.dll of this configuration (Release / Debug).</summary>
    public static string Path { get; } = Find();

    /// <summary>How to start it: <c>dotnet streaminference.dll</c>.</summary>
    public static CliCommand Command { get; } = CliCommand.At(Path);

    /// <summary>
    /// An environment variable the CLI would take settings from: left out of a child's environment, so
    /// that it runs with exactly the settings a test gives it, none from the environment the tests run in.
    /// </summary>
    public static bool IsSettingsVariable(string name) =>
        name.StartsWith("STREAMINFERENCE__", StringComparison.OrdinalIgnoreCase) || WellKnownVariables.Contains(name, StringComparer.OrdinalIgnoreCase);

    private static string Find()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory);
        var tfm = testDir.Name;                       // net10.0
        var configuration = testDir.Parent!.Name;     // Release / Debug
        var dir = testDir;
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "StreamInference.sln"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("repository root (StreamInference.sln) not found above " + AppContext.BaseDirectory);
        var path = System.IO.Path.Combine(dir.FullName, "src", "StreamInference", "bin", configuration, tfm, "streaminference.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("build the CLI first", path);
    }
}
