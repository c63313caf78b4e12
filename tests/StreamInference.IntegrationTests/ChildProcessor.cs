using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace StreamInference.IntegrationTests;

/// <summary>
/// <c>streaminference serve</c> as a child process, as it runs in production: killed with SIGKILL
/// (no cleanup at all) or stopped with SIGTERM (graceful shutdown).
/// </summary>
public sealed partial class ChildProcessor : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly TaskCompletionSource _assigned = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ChildProcessor(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public static ChildProcessor Start(IReadOnlyDictionary<string, string> settings, params string[] flags)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(CliPath);
        info.ArgumentList.Add("serve");
        foreach (var flag in flags) info.ArgumentList.Add(flag);
        foreach (var (key, value) in settings)
        {
            info.ArgumentList.Add("--set");
            info.ArgumentList.Add($"{key}={value}");
        }
        // Only the settings given here: none from the environment this test runs in.
        foreach (var key in info.Environment.Keys.ToList())
        {
            if (key.StartsWith("STREAMINFERENCE__", StringComparison.OrdinalIgnoreCase) || key is "KAFKA_BOOTSTRAP_SERVERS" or "SCHEMA_REGISTRY_URL" or "REDIS_URL")
                info.Environment.Remove(key);
        }
        info.Environment["DOTNET_gcServer"] = "0";
        return new ChildProcessor(Process.Start(info) ?? throw new InvalidOperationException("could not start the processor"));
    }

    /// <summary>The CLI built next to this test assembly's configuration (the project reference builds it first).</summary>
    public static string CliPath { get; } = FindCli();

    private static string FindCli()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory);
        var tfm = testDir.Name;                       // net10.0
        var configuration = testDir.Parent!.Name;     // Release / Debug
        var dir = testDir;
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "StreamInference.sln"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("repository root (StreamInference.sln) not found above " + AppContext.BaseDirectory);
        var path = Path.Combine(dir.FullName, "src", "StreamInference", "bin", configuration, tfm, "streaminference.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("build the CLI first", path);
    }

    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;
    public IReadOnlyCollection<string> Lines => _lines;

    /// <summary>Completes when the consumer group assigned partitions to this process.</summary>
    public Task Assigned => _assigned.Task;

    /// <summary>The port of /metrics, /healthz and /readyz, once Kestrel has said where it listens (Http:Port=0 picks one).</summary>
    public Task<int> ListeningPort => _port.Task;
    private readonly TaskCompletionSource<int> _port = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void OnLine(string? line)
    {
        if (line is null) return;
        _lines.Enqueue(line);
        if (line.Contains("Assigned ", StringComparison.Ordinal) && line.Contains("partition(s)", StringComparison.Ordinal)) _assigned.TrySetResult();
        var listening = line.IndexOf("Now listening on: ", StringComparison.Ordinal);
        if (listening >= 0 && Uri.TryCreate(line[(listening + "Now listening on: ".Length)..].Trim(), UriKind.Absolute, out var uri)) _port.TrySetResult(uri.Port);
    }

    public void Kill() => Signal(9);

    public void Terminate() => Signal(15);

    private void Signal(int signal)
    {
        if (_process.HasExited) return;
        if (kill(_process.Id, signal) != 0) throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public string Tail(int lines = 30) => string.Join(Environment.NewLine, _lines.TakeLast(lines));

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
