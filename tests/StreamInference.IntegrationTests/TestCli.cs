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

    /// <summary>The CLI with exactly the given settings variables (the test process's own are removed).</summary>
    public static Task<(int Code, string Stdout, string Stderr)> RunAsync(IEnumerable<string> args, IReadOnlyDictionary<string, string> environment) =>
        RunProgramAsync(Command.Program, [.. Command.Prefix, .. args], environment);

    public static async Task<(int Code, string Stdout, string Stderr)> RunProgramAsync(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var key in info.Environment.Keys.ToList())
        {
            if (IsSettingsVariable(key)) info.Environment.Remove(key);
        }
        foreach (var (k, v) in environment) info.Environment[k] = v;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish within 60 s");
        }
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>The repository root (where StreamInference.sln is), above this test assembly.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>Whether <paramref name="tool"/> is an executable on PATH (tests of optional tools say so and check nothing without it).</summary>
    public static bool OnPath(string tool) => Executables.Find(tool) is not null;

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "StreamInference.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root (StreamInference.sln) not found above " + AppContext.BaseDirectory);
    }

    private static string Find()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory);
        var tfm = testDir.Name;                       // net10.0
        var configuration = testDir.Parent!.Name;     // Release / Debug
        var path = System.IO.Path.Combine(FindRoot(), "src", "StreamInference", "bin", configuration, tfm, "streaminference.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("build the CLI first", path);
    }
}
