using System.Diagnostics;
using StreamInference.Batch.Training;
using StreamInference.Core.Deployment;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The fallback tier (issue 18, acceptance 3): a slow champion (a wide MLP) and a spike of 5× the base rate. The cheaper model
/// takes over while the processor is behind and hands back after the spike; lag stays bounded, switches are few,
/// every prediction says which tier served it.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class DeploymentFallbackTests(ServicesFixture services, ITestOutputHelper output) : TempDirectoryTest("si-fallback-")
{
    /// <param name="tier">
    /// The cheaper model: <c>logreg</c>, the repository's logistic regression; <c>int8</c>, the champion quantized by
    /// <c>model quantize</c>; <c>student</c>, a small tree ensemble distilled from the champion by <c>train --distill-from</c>.
    /// </param>
    [Theory]
    [InlineData("logreg")]
    [InlineData("int8")]
    [InlineData("student")]
    public async Task ASpike_SwitchesToTheFallbackTier_AndBackAfterIt_EveryPredictionTagged(string tier)
    {
        var plan = ServicesFixture.CardPaymentsPlan;
        var repository = Path.Combine(TempDir, "models");
        ModelRepository.CopyVersion(Path.Combine(AppContext.BaseDirectory, "models", "fraud-logreg", "3"), repository);
        var champion = SlowChampion(repository, plan);
        var fallbackModel = await CheaperModelAsync(tier, repository, plan);
        // The student's history and training set are garbage now: collected before the timed run, whose producer is in this process.
        GC.Collect();
        GC.WaitForPendingFinalizers();

        // The champion's and the fallback's capacities on this machine (scoring alone, on one thread, as the processor runs
        // them): the rates are set from them. The base rate is well within the champion's; the spike is twice the champion's
        // capacity, or less where the fallback could not keep up with that (INT8 gains less without VNNI), but always over it.
        var capacity = Capacity(champion, plan);
        var fallbackCapacity = Capacity(new OnnxScorer(Path.Combine(repository, fallbackModel.Replace('@', Path.DirectorySeparatorChar)), plan,
            new OnnxScorerOptions { IntraOpThreads = 1 }), plan);
        var baseRate = Math.Max(50, capacity * 0.4);
        var spikeRate = Math.Min(5 * baseRate, 0.7 * fallbackCapacity);
        Assert.True(spikeRate >= 1.25 * capacity, FormattableString.Invariant(
            $"the fallback scores {fallbackCapacity:0} rows/s against the champion's {capacity:0} on this machine: too little headroom to test a spike"));
        const double spikeSeconds = 5;
        var enter = Math.Max(200, (long)(capacity * 0.5));
        var file = Path.Combine(TempDir, "deployment.yaml");
        File.WriteAllText(file, FormattableString.Invariant($"""
            version: 1
            champion: fraud-mlp@1
            fallback:
              model: {fallbackModel}
              enterLagEvents: {enter}
              minDwellMs: 1000
            """));

        var topics = await services.CreateTopicsAsync(4);
        var options = services.ProcessorOptions(topics);
        options.Model.Repository = repository;
        options.Model.Deployment = file;
        options.Model.IntraOpThreads = 1;   // the capacity measured below is one thread's, on any machine
        await using var processor = await ProcessorHarness.StartAsync(options, output);
        var deployment = processor.Processor.Deployment!;

        var lags = new List<long>();
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                // What the fallback tier judges: consumer lag plus records queued for the pipeline.
                if (deployment.LastLag is { } lag)
                    lock (lags) lags.Add(lag);
                await Task.Delay(100);
            }
        });

        var baseEvents = (int)(baseRate * 2);
        var spikeEvents = (int)(spikeRate * spikeSeconds);
        var tailEvents = (int)(baseRate * 5);
        var clock = Stopwatch.StartNew();
        await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = baseEvents, Rate = baseRate, Seed = 1841 });
        var spikeStart = DateTimeOffset.UtcNow;
        await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = spikeEvents, Rate = spikeRate, Seed = 1842 });
        var spikeEnd = DateTimeOffset.UtcNow;
        await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = tailEvents, Rate = baseRate, Seed = 1843 });
        var total = baseEvents + spikeEvents + tailEvents;

        using var registry = services.RegistryClient();
        var predictions = await PredictionReader.ReadAsync(services.BootstrapServers, registry, topics.Predictions, total, TimeSpan.FromSeconds(120));
        // After the tail the tier is back on the champion (the exit budget was met and the dwell passed).
        await processor.WaitUntilAsync(() => deployment.Current.Fallback!.Controller.Tier == ServingTier.Champion, TimeSpan.FromSeconds(10));
        await sampling.CancelAsync();
        await sampler;

        var switches = processor.Processor.DeploymentTelemetry!.Switches;
        long maxLag;
        lock (lags) maxLag = lags.Max();
        var byArm = predictions.GroupBy(r => (string)r["arm"]).ToDictionary(g => g.Key, g => g.Count());
        var toFallback = switches.FirstOrDefault(s => s.To == ServingTier.Fallback);
        output.WriteLine(FormattableString.Invariant(
            $"champion capacity {capacity:0} rows/s, fallback {fallbackCapacity:0}; base {baseRate:0}/s, spike {spikeRate:0}/s for {(spikeEnd - spikeStart).TotalSeconds:0.0} s; enter lag {enter}, exit {enter / 2}; ") +
            FormattableString.Invariant($"max lag {maxLag} (a backlog of {spikeEvents - capacity * spikeSeconds:0} without the fallback); ") +
            $"switches {switches.Count}: {string.Join("; ", switches.Select(s => FormattableString.Invariant($"+{(s.At - spikeStart).TotalSeconds:0.00} s → {s.To} ({s.Reason})")))}; " +
            $"predictions by arm: {string.Join(", ", byArm.Select(x => $"{x.Key} {x.Value}"))}; took {clock.Elapsed.TotalSeconds:0.0} s");

        Assert.Equal(total, predictions.Select(r => (string)r["event_id"]).Distinct().Count());   // nothing lost
        // Every output says which tier served it, and was served by that tier's model.
        Assert.All(predictions, r => Assert.Equal((string)r["arm"] == "fallback" ? fallbackModel.Split('@')[0] : "fraud-mlp", (string)r["model_name"]));
        Assert.All(predictions, r => Assert.Contains((string)r["arm"], new[] { "champion", "fallback" }));
        Assert.True(byArm.GetValueOrDefault("fallback") > 0, "the fallback tier never served");
        // The switch comes within 3 s of the spike's start (lag measured every 0.5 s, over a budget of half a second of champion work).
        Assert.NotNull(toFallback);
        Assert.InRange((toFallback.At - spikeStart).TotalSeconds, 0, 3);
        // No flapping: over once, back once (the champion takes over only when the input rate is within its throughput).
        Assert.Equal(2, switches.Count);
        Assert.Equal(ServingTier.Champion, switches[^1].To);
        // Lag stays bounded: below the backlog the champion alone would have built (spike − capacity × duration).
        Assert.True(maxLag < spikeEvents - capacity * spikeSeconds, $"max lag {maxLag}");
        // The tail after the spike is served by the champion again.
        var last = predictions.OrderBy(r => (DateTime)r["event_time"]).TakeLast(50).ToList();
        Assert.All(last, r => Assert.Equal("champion", (string)r["arm"]));
    }

    /// <summary>
    /// The fallback tier's model, made by the model commands as a team would make it, and checked by <c>model validate</c>
    /// with the rest of the repository: name@version.
    /// </summary>
    private async Task<string> CheaperModelAsync(string tier, string repository, Core.Features.FeaturePlan plan)
    {
        var features = Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml");
        var champion = Path.Combine(repository, "fraud-mlp", "1");
        var none = new Dictionary<string, string>();
        string model;
        switch (tier)
        {
            case "logreg":
                return "fraud-logreg@3";
            case "int8":
            {
                var (code, stdout, stderr) = await TestCli.RunAsync(["model", "quantize", champion, "--features", features], none);
                output.WriteLine(stdout + stderr);
                Assert.True(code == 0, stderr);
                model = "fraud-mlp-int8@1";
                break;
            }
            default:
            {
                // A training set of the example world, scored by the champion: the student's soft targets.
                var history = SyntheticHistory.Generate(plan, new HistoryOptions { Events = 12_000, Span = TimeSpan.FromDays(10), Seed = 31 });
                var order = history.EventTimeOrder();
                var rows = PointInTimeFeatures.Compute(history, LookupTimeline.Compute(history, history.MaxTimeMs + 1, order), eventTimeOrder: order);
                var set = Path.Combine(TempDir, "training.parquet");
                await Batch.Training.TrainingSet.WriteAsync(set, history, rows);
                var (code, stdout, stderr) = await TestCli.RunAsync(
                    ["train", "--training-set", set, "--distill-from", champion, "--trees", "20", "--leaves", "8", "--features", features], none);
                output.WriteLine(stdout + stderr);
                Assert.True(code == 0, stderr);
                model = "fraud-mlp-student@1";
                break;
            }
        }
        var validate = await TestCli.RunAsync(["model", "validate", repository, "--features", features], none);
        output.WriteLine(validate.Stdout);
        Assert.Equal(0, validate.Code);
        Assert.Contains($"ok       {Path.Combine(repository, model.Replace('@', Path.DirectorySeparatorChar))}", validate.Stdout);
        return model;
    }

    /// <summary>A wide MLP (4096 units, three layers) imported into the repository as fraud-mlp@1: the slow champion.</summary>
    private static OnnxScorer SlowChampion(string repository, Core.Features.FeaturePlan plan)
    {
        var f = plan.FeatureCount;
        var random = new Random(18);
        var weights = Enumerable.Range(0, f).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var onnx = Path.Combine(Path.GetDirectoryName(repository)!, "fraud-mlp.onnx");
        File.WriteAllBytes(onnx, WideMlp.Build("fraud_mlp", weights, -2f, new double[f], Enumerable.Repeat(1.0, f).ToArray(), new WideMlpShape(Hidden: 4096, Layers: 3)).ToModel());
        var imported = ModelImporter.Import(new ModelImportRequest(onnx, repository, "fraud-mlp", "1"), plan);
        return new OnnxScorer(imported.Directory, plan, new OnnxScorerOptions { IntraOpThreads = 1 });
    }

    private static double Capacity(OnnxScorer model, Core.Features.FeaturePlan plan)
    {
        using (model)
        {
            var batch = new EventBatch(plan, 256, model.OutputWidth) { Count = 256, OkCount = 256 };
            model.Score(batch);
            // The median of three half-second measurements: one stall (a collection, another test's thread) does not set the rates.
            var runs = new double[3];
            for (var run = 0; run < runs.Length; run++)
            {
                var clock = Stopwatch.StartNew();
                var rows = 0;
                while (clock.Elapsed < TimeSpan.FromSeconds(0.5))
                {
                    model.Score(batch);
                    rows += 256;
                }
                runs[run] = rows / clock.Elapsed.TotalSeconds;
            }
            Array.Sort(runs);
            return runs[1];
        }
    }

}
