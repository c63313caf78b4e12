using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using StreamInference.Batch.Training;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Cli;

/// <summary>
/// <c>bench variants</c>: a model and its cheaper variants (quantized, distilled, another architecture) side by side in
/// one run on one device: held-out AUC on the same rows, size on disk, and scoring throughput at batch 1, at 256 and at
/// the best batch size, each through the serving scorer. The first model is the reference the others are compared with.
/// </summary>
public static class BenchVariants
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model")
        {
            Description = "Model version directories, the reference (e.g. the teacher, or the float model) first. Repeat the option, or separate with commas.",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
        };
        var set = new Option<string>("--training-set") { Description = "Training set (backfill's Parquet) holding the held-out rows.", DefaultValueFactory = _ => "data/training.parquet" };
        var features = new Option<string>("--features") { Description = "Feature-set definition the models were trained on.", DefaultValueFactory = _ => "schemas/features/card_payments.yaml" };
        var testFraction = new Option<double>("--test-fraction") { Description = "Held-out share when the reference's manifest has no time split.", DefaultValueFactory = _ => 0.2 };
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:<id> or auto (as Model:Device).", DefaultValueFactory = _ => "cpu" };
        var sizes = new Option<string>("--batch-sizes") { Description = "Comma-separated batch sizes (1 and 256 are always measured).", DefaultValueFactory = _ => "1,16,64,256,1024" };
        var seconds = new Option<double>("--seconds") { Description = "Measuring time per model and batch size (after 3 warm-up runs; at least 5 runs).", DefaultValueFactory = _ => 2.0 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads (Model:IntraOpThreads; 0 = its choice).", DefaultValueFactory = _ => 0 };
        var label = new Option<string?>("--label") { Description = "Name of this comparison in the results (default: the device and this machine's processor count)." };
        var output = new Option<string>("--output") { Description = "Results without extension: merged into <output>.md and <output>.json.", DefaultValueFactory = _ => "docs/model-benchmarks" };
        var command = new Command("variants",
            "A model and its cheaper variants in one run on one device: held-out AUC on the same rows, size on disk, events/s at batch 1, 256 and the best size " +
            "(serving scorer), speed-up and AUC difference against the first model. Merged into <output>.md/.json.")
        {
            models, set, features, testFraction, device, sizes, seconds, threads, label, output,
        };
        command.SetAction(parse =>
        {
            try
            {
                var dirs = parse.GetValue(models)!.SelectMany(m => m.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToArray();
                return Run(dirs, parse.GetValue(set)!, parse.GetValue(features)!, parse.GetValue(testFraction), parse.GetValue(device)!, parse.GetValue(sizes)!,
                    parse.GetValue(seconds), parse.GetValue(threads), parse.GetValue(label), parse.GetValue(output)!);
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or FileNotFoundException or InvalidOperationException or FeatureDefinitionException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    private static int Run(string[] dirs, string setPath, string featuresFile, double testFraction, string deviceText, string sizesText, double seconds, int threads,
        string? label, string output)
    {
        if (dirs.Length < 2) throw new ArgumentException("--model: give the reference model and at least one variant.");
        if (!ExecutionDevice.TryParse(deviceText, out var device, out var deviceError)) throw new ArgumentException(deviceError.Replace("Model:Device", "--device", StringComparison.Ordinal));
        var sizes = ModelBenchCommand.ParseBatchSizes(sizesText).Append(1).Append(256).Distinct().Order().ToArray();
        if (seconds is <= 0 or > 600) throw new ArgumentException("--seconds must be between 0 and 600.");
        foreach (var dir in dirs)
            if (!File.Exists(Path.Combine(dir, "model.onnx"))) throw new FileNotFoundException($"--model '{dir}' is not a model version directory (model.onnx and manifest.json).");
        if (!File.Exists(setPath)) throw new FileNotFoundException($"--training-set '{setPath}' does not exist (backfill writes it).");

        var plan = FeatureSetLoader.LoadFile(PathResolver.Resolve(featuresFile));
        var data = TrainingSet.ReadAsync(setPath, CancellationToken.None).GetAwaiter().GetResult();
        var heldOut = HeldOutRows.Select(data, ModelManifest.Load(Path.Combine(dirs[0], "manifest.json")), testFraction);
        Console.Error.WriteLine($"held-out rows: {heldOut.Rows.Length:N0} ({heldOut.Rule}); batch sizes {string.Join(", ", sizes)}, {seconds:0.#} s each");

        var variants = new JsonArray();
        double[]? referenceScores = null;
        string? provider = null;
        foreach (var dir in dirs)
        {
            using var scorer = new OnnxScorer(PathResolver.Resolve(dir), plan, new OnnxScorerOptions { Device = device, IntraOpThreads = threads });
            if (scorer.FallbackReason is not null) Console.Error.WriteLine($"warning: --device auto runs on the CPU: {scorer.FallbackReason}");
            provider ??= scorer.ExecutionProvider;
            var name = $"{scorer.ModelName}@{scorer.ModelVersion}";
            var scores = heldOut.Score(scorer, data, plan);
            referenceScores ??= scores;
            var auc = heldOut.Auc(scores);
            var rows = new JsonArray();
            foreach (var size in sizes)
            {
                var m = BatchSweep.Measure(scorer, plan, size, TimeSpan.FromSeconds(seconds));
                rows.Add(new JsonObject
                {
                    ["batchSize"] = size, ["eventsPerSecond"] = Math.Round(m.EventsPerSecond, 1), ["meanMs"] = Math.Round(m.MeanMs, 4), ["p99Ms"] = Math.Round(m.P99Ms, 4),
                });
            }
            double Rate(int size) => (double)rows.First(r => (int)r!["batchSize"]! == size)!["eventsPerSecond"]!;
            var best = rows.MaxBy(r => (double)r!["eventsPerSecond"]!)!;
            var diffs = scores.Zip(referenceScores, (a, b) => Math.Abs(a - b)).ToArray();
            var variant = new JsonObject
            {
                ["model"] = name,
                ["description"] = scorer.Manifest.Description,
                ["parameters"] = scorer.Manifest.Metrics?.GetValueOrDefault("parameters") is > 0 and var p ? p : null,
                ["fileBytes"] = (double)new FileInfo(Path.Combine(PathResolver.Resolve(dir), "model.onnx")).Length,
                ["heldOutAuc"] = Math.Round(auc, 5),
                ["maxAbsScoreDiff"] = Math.Round(diffs.Max(), 6),
                ["meanAbsScoreDiff"] = Math.Round(diffs.Average(), 6),
                ["batch1EventsPerSecond"] = Rate(1),
                ["batch256EventsPerSecond"] = Rate(256),
                ["bestBatchSize"] = (int)best["batchSize"]!,
                ["bestEventsPerSecond"] = (double)best["eventsPerSecond"]!,
                ["rows"] = rows,
            };
            variants.Add(variant);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-28} AUC {auc:0.00000}  {(double)variant["fileBytes"]! / 1e6,8:0.00} MB  batch 1 {Rate(1),10:N0}/s  batch 256 {Rate(256),10:N0}/s  best {(double)best["eventsPerSecond"]!,10:N0}/s at {(int)best["batchSize"]!}"));
        }
        var reference = variants[0]!;
        foreach (var v in variants.Select(x => x!.AsObject()))
        {
            v["aucDifference"] = Math.Round((double)v["heldOutAuc"]! - (double)reference["heldOutAuc"]!, 5);
            v["speedupBatch1"] = Math.Round((double)v["batch1EventsPerSecond"]! / (double)reference["batch1EventsPerSecond"]!, 2);
            v["speedupBatch256"] = Math.Round((double)v["batch256EventsPerSecond"]! / (double)reference["batch256EventsPerSecond"]!, 2);
            v["speedupBest"] = Math.Round((double)v["bestEventsPerSecond"]! / (double)reference["bestEventsPerSecond"]!, 2);
            v["sizeRatio"] = Math.Round((double)v["fileBytes"]! / (double)reference["fileBytes"]!, 3);
        }
        var comparison = new JsonObject
        {
            ["label"] = label ?? $"{provider} ({Environment.ProcessorCount} cores)",
            ["date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["command"] = "streaminference bench variants " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).SkipWhile(a => a != "variants").Skip(1)),
            ["reference"] = (string)reference["model"]!,
            ["executionProvider"] = provider,
            ["onnxRuntimePackage"] = OnnxScorer.PackageFlavor,
            ["processors"] = Environment.ProcessorCount,
            ["instructionSets"] = ModelBenchCommand.VectorInstructionSets(),
            ["intraOpThreads"] = threads,
            ["secondsPerBatchSize"] = seconds,
            ["heldOutRows"] = heldOut.Rows.Length,
            ["heldOutRule"] = heldOut.Rule,
            ["variants"] = variants,
        };
        ModelBenchCommand.SaveComparison(output, comparison);
        Console.Error.WriteLine($"wrote {output}.md and {output}.json");
        Console.WriteLine(comparison.ToJsonString());
        return 0;
    }
}
