using System.Text.Json;
using StreamInference.DevServices.Redis;

namespace StreamInference.IntegrationTests;

/// <summary>
/// <c>streaminference bench</c> end to end, shortened: its own embedded services, the passthrough, the
/// processor and the hand-written baseline as child processes, the open-loop generator as its own process, the
/// sustainable-rate searches and latency steps, and the results files.
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
        var baseline = root.GetProperty("baseline").GetProperty("eventsPerSecond").GetDouble();
        Assert.True(baseline > 0, $"hand-written baseline {baseline}");
        Assert.Equal(Math.Round(processor / baseline, 2), root.GetProperty("baselineRatio").GetDouble(), 2);
        // The sustainable-rate searches: two probes each in --quick, the result the highest sustained probe.
        var probes = root.GetProperty("search").EnumerateArray().ToList();
        Assert.Equal(["processor", "processor", "passthrough", "passthrough"], probes.Select(p => p.GetProperty("consumer").GetString()));
        foreach (var probe in probes)
        {
            Assert.True(probe.GetProperty("produced").GetInt64() > 0 && probe.GetProperty("achievedRate").GetDouble() > 0, probe.ToString());
            Assert.True(probe.GetProperty("backlogAtEnd").GetInt64() >= 0, probe.ToString());
            var target = probe.GetProperty("targetRate").GetDouble();
            var sustained = probe.GetProperty("achievedRate").GetDouble() >= 0.97 * target
                            && probe.GetProperty("backlogGrowth").GetInt64() <= 0.5 * target && probe.GetProperty("backlogAtEnd").GetInt64() <= 1.0 * target;
            Assert.Equal(sustained, probe.GetProperty("sustained").GetBoolean());
        }
        double Sustainable(string consumer) => probes.Where(p => p.GetProperty("consumer").GetString() == consumer && p.GetProperty("sustained").GetBoolean())
            .Select(p => p.GetProperty("targetRate").GetDouble()).DefaultIfEmpty(0).Max();
        var processorSustainable = root.GetProperty("processorSustainable").GetDouble();
        Assert.Equal(Sustainable("processor"), processorSustainable);
        Assert.Equal(Sustainable("passthrough"), root.GetProperty("passthroughSustainable").GetDouble());
        var steps = root.GetProperty("latency").EnumerateArray().ToList();
        Assert.Equal([0.25, 0.5, 0.8], steps.Select(s => s.GetProperty("fraction").GetDouble()));
        var reference = processorSustainable > 0 ? processorSustainable : processor;
        Assert.Equal(steps.Select(s => Math.Round(s.GetProperty("fraction").GetDouble() * reference)), steps.Select(s => s.GetProperty("targetRate").GetDouble()));
        foreach (var step in steps)
        {
            Assert.True(step.GetProperty("samples").GetInt32() > 100, step.ToString());
            var p50 = step.GetProperty("p50Ms").GetDouble();
            var p99 = step.GetProperty("p99Ms").GetDouble();
            Assert.InRange(p50, 0, p99);
        }
        var goals = root.GetProperty("goals").EnumerateArray().Select(g => g.GetProperty("name").GetString()).ToList();
        Assert.Contains("processor ÷ passthrough, backlog throughput (nothing else running)", goals);
        Assert.Contains("processor ÷ hand-written baseline throughput", goals);
        Assert.Contains(goals, g => g!.StartsWith("p99 event-to-prediction at 50 % of the", StringComparison.Ordinal));
        if (root.GetProperty("passthroughSustainable").GetDouble() > 0)
            Assert.Contains("processor ÷ passthrough, sustainable rates (open loop, generator running)", goals);
        Assert.Contains(root.GetProperty("stages").EnumerateArray(), f => f.GetProperty("name").GetString() == "mean batch size");
        var markdown = await File.ReadAllTextAsync(results + ".md");
        Assert.Contains("ratio processor ÷ passthrough", markdown);
        Assert.Contains("## Sustainable throughput (open loop)", markdown);
        // The bench's Redis is the real server where one is installed, and the results say which it was.
        Assert.StartsWith(LocalRedisServer.FindExecutable() is null ? "embedded Garnet" : "redis-server ", root.GetProperty("redis").GetString());
    }
}
