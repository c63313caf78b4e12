using System.Text.Json;

namespace StreamInference.IntegrationTests;

/// <summary>
/// <c>streaminference bench</c> end to end, shortened: its own embedded services, the passthrough and the
/// processor as child processes, the open-loop latency steps, and the results files.
/// </summary>
public sealed class BenchCommandTests(ITestOutputHelper output) : TempDirectoryTest("si-bench-")
{
    [Fact]
    public async Task Bench_Quick_WritesThroughputLatencyAndGoals()
    {
        var results = Path.Combine(TempDir, "bench");
        using var bench = ChildProcess.Start(TestCli.Command,
            ["bench", "--quick", "--skip-micro", "--events", "12000", "--partitions", "4", "--latency-seconds", "4", "--output", results],
            new ChildProcessOptions { Name = "bench", KeepLines = int.MaxValue, DropEnvironment = name => name == "REDIS_URL" });
        Assert.True(await bench.WaitForExitAsync(TimeSpan.FromMinutes(5)), $"bench still running after 5 min:{Environment.NewLine}{bench.Tail()}");
        var log = bench.Tail(int.MaxValue);
        output.WriteLine(log);
        Assert.True(bench.ExitCode == 0, $"bench exited with {bench.ExitCode}: {log}");

        using var json = JsonDocument.Parse(await File.ReadAllTextAsync(results + ".json"));
        var root = json.RootElement;
        var passthrough = root.GetProperty("passthrough").GetProperty("eventsPerSecond").GetDouble();
        var processor = root.GetProperty("processor").GetProperty("eventsPerSecond").GetDouble();
        Assert.True(passthrough > 0 && processor > 0, $"throughput {passthrough} / {processor}");
        Assert.Equal(Math.Round(processor / passthrough, 3), root.GetProperty("throughputRatio").GetDouble(), 3);
        Assert.True(root.GetProperty("processor").GetProperty("cpuMicrosPerEvent").GetDouble() > 0);
        var steps = root.GetProperty("latency").EnumerateArray().ToList();
        Assert.Equal([0.25, 0.5, 0.8], steps.Select(s => s.GetProperty("fraction").GetDouble()));
        foreach (var step in steps)
        {
            Assert.True(step.GetProperty("samples").GetInt32() > 100, step.ToString());
            var p50 = step.GetProperty("p50Ms").GetDouble();
            var p99 = step.GetProperty("p99Ms").GetDouble();
            Assert.InRange(p50, 0, p99);
        }
        var goals = root.GetProperty("goals").EnumerateArray().Select(g => g.GetProperty("name").GetString()).ToList();
        Assert.Contains("processor ÷ passthrough throughput", goals);
        Assert.Contains("p99 event-to-prediction at 50 % of max rate", goals);
        Assert.Contains(root.GetProperty("stages").EnumerateArray(), f => f.GetProperty("name").GetString() == "mean batch size");
        var markdown = await File.ReadAllTextAsync(results + ".md");
        Assert.Contains("ratio processor ÷ passthrough", markdown);
    }
}
