using System.Diagnostics;
using StackExchange.Redis;
using StreamInference.DevServices.Processes;

namespace StreamInference.DevServices.Redis;

/// <summary>
/// A <c>redis-server</c> child process on a loopback port, without persistence (the real server, for tests and
/// benchmarks, where it is installed); stopped and started again on the same port when asked.
/// </summary>
public sealed class LocalRedisServer : IDisposable
{
    private readonly string _executable;
    private Process? _process;

    private LocalRedisServer(string executable, int port) => (_executable, Port) = (executable, port);

    public int Port { get; }

    /// <summary>StackExchange.Redis configuration string.</summary>
    public string Configuration => $"127.0.0.1:{Port}";

    /// <summary>The installed redis-server, or null when there is none.</summary>
    public static string? FindExecutable() => Executables.Find("redis-server");

    /// <summary>Starts redis-server and waits until it answers PING; null when it is not installed.</summary>
    public static async Task<LocalRedisServer?> TryStartAsync(int port = 0, CancellationToken cancellationToken = default)
    {
        if (FindExecutable() is not { } exe) return null;
        var server = new LocalRedisServer(exe, port == 0 ? EmbeddedGarnet.FreePort() : port);
        try
        {
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>Starts the server (again) on its port and waits until it answers.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_process is not null) return;
        _process = Process.Start(new ProcessStartInfo(_executable, ["--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        await WaitReadyAsync(Configuration, TimeSpan.FromSeconds(20), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Kills the server (an outage); <see cref="StartAsync"/> brings it back on the same port, empty.</summary>
    public void Stop()
    {
        if (_process is not { } p) return;
        _process = null;
        try
        {
            p.Kill();
            p.WaitForExit();
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        p.Dispose();
    }

    /// <summary>Waits until a Redis at <paramref name="configuration"/> answers PING.</summary>
    public static async Task WaitReadyAsync(string configuration, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var mux = await ConnectionMultiplexer.ConnectAsync(configuration + ",connectTimeout=500").ConfigureAwait(false);
                await mux.GetDatabase().PingAsync().ConfigureAwait(false);
                return;
            }
            catch (RedisConnectionException) when (clock.Elapsed < timeout)
            {
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    public void Dispose() => Stop();
}
