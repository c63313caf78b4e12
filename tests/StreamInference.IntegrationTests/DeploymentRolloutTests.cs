using System.Diagnostics;
using Avro.Generic;
using StreamInference.Core.Deployment;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Deployments beyond a shadow (issue 18): a canary arm that is sticky per entity across restarts, and a promote and
/// rollback applied while a consumer group of two is under load, with every prediction naming the model its batch's
/// deployment version assigned, and drift monitored per model against each model's own profile.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class DeploymentRolloutTests(ServicesFixture services, ITestOutputHelper output) : TempDirectoryTest("si-rollout-")
{
    private const string Champion = "fraud-gbm";
    private const string Challenger = "fraud-logreg";

    [Fact]
    public async Task Canary_ServesAStickyTenthOfTheEntities_TheSameAfterARestart()
    {
        const int first = 3000, second = 1500;
        var topics = await services.CreateTopicsAsync(4);
        var file = Path.Combine(TempDir, "deployment.yaml");
        File.WriteAllText(file, """
            version: 1
            champion: fraud-gbm@1
            canary:
              model: fraud-logreg@3
              share: 0.1
              salt: issue-18
            """);
        var options = services.ProcessorOptions(topics);
        options.Model.Deployment = file;
        using var registry = services.RegistryClient();
        var sampler = new EntitySampler("issue-18", 0.1);

        Assert.Equal(first, (await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = first, Seed = 181 })).Produced);
        List<GenericRecord> before;
        await using (var processor = await ProcessorHarness.StartAsync(options, output))
        {
            before = await PredictionReader.ReadAsync(services.BootstrapServers, registry, topics.Predictions, first);
            await processor.StopAsync();
        }
        // A restart of the same group: later events of the same entities land in the same arm.
        Assert.Equal(second, (await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = second, Seed = 182 })).Produced);
        List<GenericRecord> after;
        await using (var processor = await ProcessorHarness.StartAsync(options, output))
        {
            after = await PredictionReader.ReadAsync(services.BootstrapServers, registry, topics.Predictions, first + second);
            await processor.StopAsync();
        }
        Assert.Equal(first + second, after.Select(r => (string)r["event_id"]).Distinct().Count());

        // Every prediction: the arm the entity hash gives, served by that arm's model, under deployment v1.
        foreach (var r in after)
        {
            var canary = sampler.Contains((string)r["entity_key"]);
            Assert.Equal(canary ? "canary" : "champion", (string)r["arm"]);
            Assert.Equal(canary ? Challenger : Champion, (string)r["model_name"]);
            Assert.Equal(1L, (long)r["deployment_version"]!);
        }
        var armBefore = before.GroupBy(r => (string)r["entity_key"]).ToDictionary(g => g.Key, g => g.Select(r => (string)r["arm"]).Distinct().Single());
        var secondRun = after.Where(r => !before.Any(b => (string)b["event_id"] == (string)r["event_id"])).ToList();
        var both = secondRun.Where(r => armBefore.ContainsKey((string)r["entity_key"])).ToList();
        Assert.NotEmpty(both);
        Assert.All(both, r => Assert.Equal(armBefore[(string)r["entity_key"]], (string)r["arm"]));

        // The share of entities in the arm is within the 99 % binomial interval around 10 %.
        var entities = after.Select(r => (string)r["entity_key"]).Distinct().ToList();
        var inArm = entities.Count(e => sampler.Contains(e));
        var n = entities.Count;
        var half = 2.5758 * Math.Sqrt(0.1 * 0.9 / n);
        var share = inArm / (double)n;
        output.WriteLine($"canary: {inArm} of {n} entities ({share:P2}); 99 % interval {0.1 - half:P2} .. {0.1 + half:P2}; " +
                         $"{after.Count(r => (string)r["arm"] == "canary")} of {after.Count} events; {both.Count} second-run events of first-run entities");
        Assert.InRange(share, 0.1 - half, 0.1 + half);

        // A replay of the deployment assigns every event to the same arm and model as the live processor did.
        var path = Path.Combine(TempDir, "replay.parquet");
        var models = Path.Combine(AppContext.BaseDirectory, "models");
        var summary = await StreamInference.Batch.Replay.ReplayRunner.RunAsync(new StreamInference.Batch.Replay.ReplayRequest
        {
            BootstrapServers = services.BootstrapServers, Topic = topics.Input, From = "beginning", To = "now",
            ModelDirectory = ModelRepository.Resolve(models, Champion, "1"), OutputParquet = path,
            Canary = new StreamInference.Batch.Replay.ReplayCanary(ModelRepository.Resolve(models, Challenger, "3"), 0.1, "issue-18"), DeploymentVersion = 1,
        }, ServicesFixture.CardPaymentsPlan, ServicesFixture.PaymentEventSchema, registry);
        Assert.Equal(first + second, summary.Predictions);
        await using var stream = File.OpenRead(path);
        await using var parquet = await Parquet.ParquetReader.CreateAsync(stream);
        using var rg = parquet.OpenRowGroupReader(0);
        var fields = parquet.Schema.GetDataFields();
        async Task<string?[]> Column(string name) =>
            await StreamInference.Batch.History.ParquetHistory.ReadTextAsync(rg, fields.Single(f => f.Name == name), first + second, CancellationToken.None);
        var (ids, arms, names) = (await Column("event_id"), await Column("arm"), await Column("model_name"));
        var live = after.ToDictionary(r => (string)r["event_id"], r => ((string)r["arm"], (string)r["model_name"]));
        Assert.Equal(first + second, ids.Length);
        for (var i = 0; i < ids.Length; i++) Assert.Equal(live[ids[i]!], (arms[i]!, names[i]!));
    }

    [Fact]
    public async Task PromoteAndRollback_UnderLoad_InAGroupOfTwo_LoseNothing_AndEveryPredictionNamesItsVersionsModel()
    {
        const int events = 6000;
        var topics = await services.CreateTopicsAsync(4);
        var file = Path.Combine(TempDir, "deployment.yaml");
        File.WriteAllText(file, """
            version: 1
            champion: fraud-gbm@1
            """);
        var group = ServicesFixture.NewGroup();
        ProcessorOptions Options()
        {
            var o = services.ProcessorOptions(topics, group);
            o.Model.Deployment = file;
            o.Model.WatchIntervalMs = 250;
            o.Drift = new DriftOptions { Enabled = true, Topic = topics.Predictions + ".drift", WindowEvents = 300, MinWindowEvents = 100 };
            return o;
        }
        await using var a = await ProcessorHarness.StartAsync(Options(), output);
        await using var b = await ProcessorHarness.StartAsync(Options(), output);
        await a.WaitUntilAsync(() => a.AssignedPartitions + b.AssignedPartitions == 4 && a.AssignedPartitions > 0 && b.AssignedPartitions > 0, ProcessorHarness.AssignTimeout);

        // 6000 events at 600/s: the promote lands after about 3 s, the rollback about 3 s later.
        var producing = services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = events, Rate = 600, Seed = 183 });
        using var registry = services.RegistryClient();
        var convergence = new List<double>();
        async Task ApplyAsync(Func<DeploymentSpec, DeploymentSpec> change, long version)
        {
            change(DeploymentSpec.LoadFile(file)).Save(file);
            var clock = Stopwatch.StartNew();
            Assert.True(await a.WaitUntilAsync(() => Serving(a) == version && Serving(b) == version, TimeSpan.FromSeconds(20)),
                $"the group did not converge on v{version}: {Serving(a)}, {Serving(b)}");
            convergence.Add(clock.Elapsed.TotalMilliseconds);
        }
        await Task.Delay(3000);
        await ApplyAsync(d => d.Promote(new ModelRef(Challenger, "3")), 2);
        await Task.Delay(3000);
        await ApplyAsync(d => d.Rollback(), 3);
        Assert.Equal(events, (await producing).Produced);

        var predictions = await PredictionReader.ReadAsync(services.BootstrapServers, registry, topics.Predictions, events);
        var expected = new Dictionary<long, string> { [1] = Champion, [2] = Challenger, [3] = Champion };
        var byVersion = predictions.GroupBy(r => (long)r["deployment_version"]!).ToDictionary(g => g.Key, g => g.Count());
        output.WriteLine($"predictions by deployment version: {string.Join(", ", byVersion.OrderBy(x => x.Key).Select(x => $"v{x.Key} {x.Value}"))}; " +
                         $"convergence of both members after each change: {string.Join(", ", convergence.Select(ms => $"{ms:0} ms"))}");
        Assert.Equal(events, predictions.Select(r => (string)r["event_id"]).Distinct().Count());   // nothing lost
        Assert.All(predictions, r => Assert.Equal(expected[(long)r["deployment_version"]!], (string)r["model_name"]));
        Assert.All(predictions, r => Assert.Equal("champion", (string)r["arm"]));
        Assert.Equal([1L, 2L, 3L], byVersion.Keys.Order());

        // Drift per model: each model's monitor saw exactly the events that model served, with its own profile (a
        // monitor only takes a profile of its own model), and closed windows; the rolled-back model left the monitors.
        var totals = new[] { a, b }.SelectMany(p => p.Processor.ModelDrift!.Totals).GroupBy(x => x.Key)
            .ToDictionary(g => g.Key, g => (Observed: g.Sum(x => x.Value.Observed), Windows: g.Sum(x => x.Value.Windows)));
        output.WriteLine($"drift per model: {string.Join(", ", totals.Select(x => $"{x.Key} {x.Value.Observed} events, {x.Value.Windows} windows"))}");
        foreach (var name in new[] { Champion, Challenger })
        {
            var served = predictions.Count(r => (string)r["model_name"] == name);
            var key = name == Champion ? $"{Champion}@1" : $"{Challenger}@3";
            Assert.Equal(served, totals[key].Observed);
            Assert.True(totals[key].Windows > 0, $"{key} closed no drift window");
        }
        Assert.All(new[] { a, b }, p => Assert.DoesNotContain(p.Processor.ModelDrift!.Monitors.Keys, m => m.Name == Challenger));
    }

    /// <summary>
    /// A canary and a shadow together: each challenger is compared with the champion's own scores, not with what
    /// the canary served. The shadow is the champion's graph under another name, so its comparison is exact
    /// agreement with no difference on every window; the canary's windows hold only its entities' events.
    /// </summary>
    [Fact]
    public async Task CanaryAndShadow_AreEachComparedWithTheChampion()
    {
        const int events = 2000;
        var repository = Path.Combine(TempDir, "models");
        var models = Path.Combine(AppContext.BaseDirectory, "models");
        ModelRepository.CopyVersion(Path.Combine(models, Champion, "1"), repository);
        ModelRepository.CopyVersion(Path.Combine(models, Challenger, "3"), repository);
        ModelRepository.CopyVersion(Path.Combine(models, Champion, "1"), repository, "fraud-gbm-copy");
        var file = Path.Combine(TempDir, "deployment.yaml");
        File.WriteAllText(file, """
            version: 1
            champion: fraud-gbm@1
            canary:
              model: fraud-logreg@3
              share: 0.3
              salt: both
            shadows:
              - model: fraud-gbm-copy@1
            """);
        var topics = await services.CreateTopicsAsync(2);
        var options = services.ProcessorOptions(topics);
        options.Model.Repository = repository;
        options.Model.Deployment = file;
        options.Model.ComparisonWindowEvents = 100;
        options.Kafka.ShadowTopic = await services.CreateTopicAsync("shadow", 2);
        options.Kafka.ComparisonTopic = await services.CreateTopicAsync("comparison", 1);
        using var registry = services.RegistryClient();
        Assert.Equal(events, (await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = events, Seed = 184 })).Produced);
        await using var processor = await ProcessorHarness.StartAsync(options, output);
        var predictions = await PredictionReader.ReadAsync(services.BootstrapServers, registry, topics.Predictions, events);
        var canaryEvents = predictions.Count(r => (string)r["arm"] == "canary");
        // Whole windows only: 2,000 shadow pairs make 20; the canary's pairs make as many whole windows as they fill.
        var expected = events / 100 + canaryEvents / 100;
        var reports = await PredictionReader.ReadAsync(services.BootstrapServers, registry, options.Kafka.ComparisonTopic, expected, keyedByEntity: false);
        await processor.StopAsync();

        var shadow = reports.Where(r => (string)r["arm"] == "shadow").ToList();
        var canary = reports.Where(r => (string)r["arm"] == "canary").ToList();
        output.WriteLine($"{canaryEvents} canary events; {shadow.Count} shadow windows, {canary.Count} canary windows; canary agreement " +
                         string.Join(", ", canary.Select(r => ((double)r["agreement"]).ToString("P1", System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(events / 100, shadow.Count);
        Assert.All(shadow, r => Assert.Equal(("fraud-gbm-copy@1", 1.0, 0.0), ((string)r["challenger"], (double)r["agreement"], (double)r["abs_difference_p99"])));
        Assert.Equal(canaryEvents / 100, canary.Count);
        Assert.All(canary, r => Assert.Equal("fraud-logreg@3", (string)r["challenger"]));
        Assert.Contains(canary, r => (double)r["abs_difference_p99"] > 0);   // another model: its scores differ from the champion's
    }

    private static long Serving(InProcessProcessor p) => p.Processor.Deployment?.Current.Version ?? 0;
}
