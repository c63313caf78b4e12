using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace StreamInference.DevServices.Processes;

/// <summary>
/// A command of the <c>streaminference</c> CLI (<c>serve</c>, <c>bench passthrough</c>, ...) as a child
/// process: standard output and error read line by line and their last lines kept for errors, stopped
/// with SIGTERM (graceful shutdown) or SIGKILL (no cleanup at all), its CPU time, and what <c>serve</c>
/// says about itself: the port Kestrel listens on and the first partitions the consumer group assigned.
/// </summary>
public sealed partial class ChildProcess : IDisposable
{
    private const int SigKill = 9, SigTerm = 15;
    private readonly Process _process;
    private readonly Queue<string> _lines = new();
    private readonly int _keepLines;
    private readonly TaskCompletionSource<int> _assigned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _port = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ChildProcess(Process process, ChildProcessOptions options)
    {
        _process = process;
        _keepLines = Math.Max(1, options.KeepLines);
        Name = options.Name;
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
    }

    /// <summary>Starts <paramref name="cli"/> with <paramref name="arguments"/> (the command and its options).</summary>
    public static ChildProcess Start(CliCommand cli, IEnumerable<string> arguments, ChildProcessOptions? options = null)
    {
        options ??= new ChildProcessOptions();
        var info = new ProcessStartInfo(cli.Program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in cli.Prefix.Concat(arguments)) info.ArgumentList.Add(a);
        if (options.DropEnvironment is { } drop)
        {
            foreach (var key in info.Environment.Keys.Where(drop).ToList()) info.Environment.Remove(key);
        }
        foreach (var (key, value) in options.Environment) info.Environment[key] = value;
        var child = new ChildProcess(new Process { StartInfo = info }, options);
        if (!child._process.Start()) throw new InvalidOperationException($"could not start {options.Name}: {cli.Program}");
        child._process.BeginOutputReadLine();
        child._process.BeginErrorReadLine();
        child.Exited = child._process.WaitForExitAsync();
        return child;
    }

    /// <summary><c>--set Key=Value</c> for each setting, as <c>serve</c> takes them.</summary>
    public static IEnumerable<string> SetArguments(IEnumerable<string> assignments) => assignments.SelectMany(a => new[] { "--set", a });

    /// <inheritdoc cref="SetArguments(IEnumerable{string})"/>
    public static IEnumerable<string> SetArguments(IEnumerable<KeyValuePair<string, string>> settings) =>
        SetArguments(settings.Select(s => $"{s.Key}={s.Value}"));

    public string Name { get; }
    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Completes when the process has exited and its output has been read to the end.</summary>
    public Task Exited { get; private set; } = Task.CompletedTask;

    /// <summary>The output lines kept so far (standard output and error, as they came).</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines) return [.. _lines];
        }
    }

    /// <summary>The last <paramref name="lines"/> output lines, for error messages.</summary>
    public string Tail(int lines = 40)
    {
        lock (_lines) return string.Join(Environment.NewLine, _lines.TakeLast(lines));
    }

    /// <summary>
    /// The partition count of the first "Assigned N partition(s)" line with N above 0: the consumer group
    /// gave this process work. Needs the consumer's information-level log.
    /// </summary>
    public Task<int> Assigned => _assigned.Task;

    /// <summary>The port of /metrics, /healthz and /readyz once Kestrel said where it listens (Http:Port=0 picks one).</summary>
    public Task<int> ListeningPort => _port.Task;

    /// <summary>
    /// Waits for <see cref="Assigned"/>. Fails with the output's tail when the process exits first
    /// (<see cref="InvalidOperationException"/>) or <paramref name="timeout"/> passes (<see cref="TimeoutException"/>).
    /// </summary>
    public async Task<int> WaitAssignedAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var first = await Task.WhenAny(Assigned, Exited, Task.Delay(timeout, wait.Token)).ConfigureAwait(false);
        await wait.CancelAsync().ConfigureAwait(false);
        if (first == Assigned) return await Assigned.ConfigureAwait(false);
        ct.ThrowIfCancellationRequested();
        if (first == Exited)
            throw new InvalidOperationException($"{Name} exited with {ExitCode} before it was assigned partitions:{Environment.NewLine}{Tail()}");
        throw new TimeoutException($"{Name}: no partitions assigned within {timeout.TotalSeconds:N0} s:{Environment.NewLine}{Tail()}");
    }

    /// <summary>User plus system CPU time so far.</summary>
    public TimeSpan CpuTime()
    {
        _process.Refresh();
        return _process.TotalProcessorTime;
    }

    /// <summary>SIGKILL: the process ends at once, without any cleanup.</summary>
    public void Kill() => Signal(SigKill);

    /// <summary>SIGTERM: the process shuts down gracefully (on Windows, where there is none, it is killed).</summary>
    public void Terminate() => Signal(SigTerm);

    /// <summary>Whether the process exited within <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var first = await Task.WhenAny(Exited, Task.Delay(timeout, wait.Token)).ConfigureAwait(false);
        await wait.CancelAsync().ConfigureAwait(false);
        ct.ThrowIfCancellationRequested();
        return first == Exited;
    }

    /// <summary>SIGTERM, then waits up to <paramref name="timeout"/>; kills the process tree past it. Whether it stopped by itself.</summary>
    public async Task<bool> StopAsync(TimeSpan timeout)
    {
        if (_process.HasExited) return true;
        Terminate();
        if (await WaitForExitAsync(timeout).ConfigureAwait(false)) return true;
        _process.Kill(entireProcessTree: true);
        await Exited.ConfigureAwait(false);
        return false;
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        lock (_lines)
        {
            _lines.Enqueue(line);
            while (_lines.Count > _keepLines) _lines.Dequeue();
        }
        if (AssignedLine().Match(line) is { Success: true } assigned
            && int.TryParse(assigned.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count > 0)
            _assigned.TrySetResult(count);
        const string listening = "Now listening on: ";
        var at = line.IndexOf(listening, StringComparison.Ordinal);
        if (at >= 0 && Uri.TryCreate(line[(at + listening.Length)..].Trim(), UriKind.Absolute, out var uri)) _port.TrySetResult(uri.Port);
    }

    private void Signal(int signal)
    {
        if (_process.HasExited) return;
        if (OperatingSystem.IsWindows())
        {
            _process.Kill(entireProcessTree: true);
            return;
        }
        if (kill(_process.Id, signal) != 0 && !_process.HasExited)
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }

    [GeneratedRegex(@"\bAssigned (\d+) partition\(s\)")]
    private static partial Regex AssignedLine();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}

/// <summary>How a <see cref="ChildProcess"/> starts.</summary>
public sealed class ChildProcessOptions
{
    /// <summary>Names the child in errors (processor, passthrough, bench).</summary>
    public string Name { get; init; } = "child";

    /// <summary>How many of the last output lines to keep (<see cref="int.MaxValue"/>: all of them).</summary>
    public int KeepLines { get; init; } = 200;

    /// <summary>Inherited environment variables to leave out, by name.</summary>
    public Func<string, bool>? DropEnvironment { get; init; }

    /// <summary>Environment variables to set (after <see cref="DropEnvironment"/>).</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();
}
