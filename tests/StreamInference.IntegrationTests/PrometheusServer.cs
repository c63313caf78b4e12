using System.Text.Json;

namespace StreamInference.IntegrationTests;

/// <summary>
/// A real Prometheus (the distribution's <c>prometheus</c> binary, where installed) scraping the given local ports every
/// second and evaluating the given rule file every second, in a temporary directory; its HTTP API for the tests.
/// </summary>
public sealed class PrometheusServer : IDisposable
{
    private readonly ChildProcess _process;
    private readonly HttpClient _api;
    private readonly string _dir;

    private PrometheusServer(ChildProcess process, HttpClient api, string dir) => (_process, _api, _dir) = (process, api, dir);

    /// <summary>Null (after saying so) when prometheus is not on PATH.</summary>
    public static PrometheusServer? StartIfInstalled(IEnumerable<int> targets, string rules, ITestOutputHelper output)
    {
        if (!TestCli.OnPath("prometheus"))
        {
            output.WriteLine("prometheus is not installed (apt-get install prometheus): nothing was evaluated by Prometheus");
            return null;
        }
        var dir = Directory.CreateTempSubdirectory("si-prometheus-").FullName;
        File.Copy(rules, Path.Combine(dir, "rules.yml"));
        File.WriteAllText(Path.Combine(dir, "prometheus.yml"), $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files: [rules.yml]
            scrape_configs:
              - job_name: streaminference
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(p => $"\"127.0.0.1:{p}\""))}]
            """);
        var port = DevServices.Redis.EmbeddedGarnet.FreePort();
        var process = ChildProcess.Start(new CliCommand("prometheus", []),
            [$"--config.file={Path.Combine(dir, "prometheus.yml")}", $"--storage.tsdb.path={Path.Combine(dir, "data")}", $"--web.listen-address=127.0.0.1:{port}"],
            new ChildProcessOptions { Name = "prometheus" });
        return new PrometheusServer(process, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") }, dir);
    }

    /// <summary>The <c>data</c> of an API answer whose status is success.</summary>
    public async Task<JsonElement> GetAsync(string path)
    {
        var json = JsonDocument.Parse(await _api.GetStringAsync(path)).RootElement;
        Assert.Equal("success", json.GetProperty("status").GetString());
        return json.GetProperty("data").Clone();
    }

    /// <summary>How many series an instant query returns.</summary>
    public async Task<int> CountAsync(string query) => (await GetAsync("/api/v1/query?query=" + Uri.EscapeDataString(query))).GetProperty("result").GetArrayLength();

    /// <summary>Until <paramref name="query"/> returns <paramref name="series"/> series (Prometheus may still be starting).</summary>
    public async Task WaitAsync(string query, int series, TimeSpan timeout)
    {
        var limit = Stopwatch.StartNew();
        while (true)
        {
            Assert.False(_process.HasExited, $"prometheus ended:{Environment.NewLine}{_process.Tail()}");
            try
            {
                if (await CountAsync(query) == series) return;
            }
            catch (HttpRequestException)
            {
            }
            Assert.True(limit.Elapsed < timeout, $"'{query}' did not return {series} series within {timeout.TotalSeconds:0} s:{Environment.NewLine}{_process.Tail()}");
            await Task.Delay(500);
        }
    }

    public void Dispose()
    {
        _process.Dispose();
        _api.Dispose();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }
}
