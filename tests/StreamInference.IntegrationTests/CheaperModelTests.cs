using Microsoft.ML;
using Onnx;
using StreamInference.Batch.Onnx;
using StreamInference.Batch.Training;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Cheaper models: INT8 and FP16 rewrites of MatMul/Gemm weights (<see cref="OnnxQuantizer"/>, <c>model quantize</c>)
/// scored by ONNX Runtime against the float graph, and distilled students (<c>train --distill-from</c>).
/// </summary>
public sealed class CheaperModelTests(ITestOutputHelper output) : TempDirectoryTest("si-cheaper-")
{
    private static readonly FeaturePlan Plan = ServicesFixture.CardPaymentsPlan;

    private string Repository => Path.Combine(TempDir, "models");

    /// <summary>Feature rows spread like the card-payment features: mixed scales, some far out.</summary>
    private static float[] Rows(int count, int seed)
    {
        var random = new Random(seed);
        var f = Plan.FeatureCount;
        var rows = new float[count * f];
        for (var i = 0; i < rows.Length; i++)
        {
            var column = i % f;
            var scale = column % 3 == 0 ? 8.0 : column % 3 == 1 ? 1.0 : 40.0;
            rows[i] = (float)(random.NextDouble() * scale * (random.Next(50) == 0 ? 5 : 1));
        }
        return rows;
    }

    private static double[] Scores(string directory, float[] rows)
    {
        using var scorer = new OnnxScorer(directory, Plan);
        return Batch.Scoring.RowScoring.PrimaryScores(scorer, Plan, rows, rows.Length / Plan.FeatureCount);
    }

    /// <summary>A wide MLP (the GPU-sized example's shape, narrower) imported as wide@1.</summary>
    private string WideMlpModel(int hidden = 512)
    {
        var f = Plan.FeatureCount;
        var random = new Random(22);
        var weights = Enumerable.Range(0, f).Select(_ => (float)(random.NextDouble() - 0.5) * 0.2f).ToArray();
        var reference = Rows(2_000, 5);
        var mean = Enumerable.Range(0, f).Select(j => Enumerable.Range(0, 2_000).Average(i => (double)reference[i * f + j])).ToArray();
        var std = Enumerable.Range(0, f).Select(j => Math.Sqrt(Enumerable.Range(0, 2_000).Average(i => Math.Pow(reference[i * f + j] - mean[j], 2)))).ToArray();
        var file = Path.Combine(TempDir, "wide.onnx");
        File.WriteAllBytes(file, WideMlp.Build("wide", weights, -1.5f, mean, std, new WideMlpShape(hidden, 3)).ToModel());
        return ModelImporter.Import(new ModelImportRequest(file, Repository, "wide", "1"), Plan).Directory;
    }

    private static List<string> OpTypes(string directory) =>
        [.. ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(directory, "model.onnx"))).Graph.Node.Select(n => n.OpType)];

    [Fact]
    public void Int8_WideMlp_ScoresWithinTolerance_OfTheFloatGraph_On10000Rows()
    {
        var source = WideMlpModel();
        var result = ModelQuantization.Run(new QuantizeRequest(source, new QuantizationOptions()), Plan);

        // fraud-style naming and the source's contract: same input, score output and columns; it loads as serve loads it.
        Assert.Equal(Path.Combine(Repository, "wide-int8", "1"), result.Directory);
        var manifest = ModelManifest.Load(Path.Combine(result.Directory, "manifest.json"));
        Assert.Equal(("wide-int8", "1", "features", "probability"), (manifest.Name, manifest.Version, manifest.Input, manifest.ScoreOutput));
        Assert.Equal(Plan.Features.Select(x => x.Name), manifest.Features);
        // The two hidden-to-hidden layers are converted; the 12-column input layer and the GEMVs stay float.
        Assert.Equal(["w2", "w3"], result.Report.Converted.Select(n => n.Weight));
        Assert.Equal(3, result.Report.Skipped.Count(n => n.Reason!.Contains("--min-dimension", StringComparison.Ordinal)));
        var ops = OpTypes(result.Directory);
        Assert.Equal(2, ops.Count(o => o == "MatMulInteger"));
        Assert.Equal(2, ops.Count(o => o == "DynamicQuantizeLinear"));   // the activations of h1 and h2
        Assert.Equal(3, ops.Count(o => o == "MatMul"));
        // int8 weights are a quarter of the float ones.
        var converted = result.Report.Converted.Sum(n => n.Rows * n.Columns);
        Assert.InRange(result.Report.WeightBytesBefore - result.Report.WeightBytesAfter, converted * 3 - converted / 10, converted * 3);

        var rows = Rows(10_000, 7);
        var reference = Scores(source, rows);
        var quantized = Scores(result.Directory, rows);
        var diffs = reference.Zip(quantized, (a, b) => Math.Abs(a - b)).ToArray();
        output.WriteLine($"10,000 rows: max |Δ score| {diffs.Max():G3}, mean {diffs.Average():G3}; score range {reference.Min():0.###}–{reference.Max():0.###}");
        Assert.True(diffs.Max() <= 5e-3, $"max |Δ score| {diffs.Max()}");
        Assert.True(diffs.Average() <= 5e-4, $"mean |Δ score| {diffs.Average()}");
        Assert.True(diffs.Max() > 0, "the quantized graph scores exactly as the float one: nothing was quantized");
    }

    /// <summary>A plain MLP whose every layer is converted, with a Gemm carrying transB, alpha, beta and a bias.</summary>
    [Theory]
    [InlineData(QuantizationType.Int8, 0.03)]
    [InlineData(QuantizationType.Fp16, 0.003)]
    public void GemmAndMatMul_Converted_MatchTheFloatGraph(QuantizationType type, double tolerance)
    {
        var f = Plan.FeatureCount;
        var random = new Random(3);
        float[] Gaussian(int n, double std) => [.. Enumerable.Range(0, n).Select(_ => (float)(std * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())))];
        var graph = new OnnxGraph("mlp")
            .InputMatrix("features", f)
            .Initializer("inv_scale", [.. Enumerable.Range(0, f).Select(j => j % 3 == 2 ? 1 / 40f : j % 3 == 0 ? 1 / 8f : 1f)], f)
            .Node("Mul", ["features", "inv_scale"], ["scaled"])
            .Initializer("w1", Gaussian(f * 64, Math.Sqrt(2.0 / f)), f, 64)
            .Node("MatMul", ["scaled", "w1"], ["z1"])
            .Node("Relu", ["z1"], ["h1"])
            // Gemm: 0.5 · h1 · w2ᵀ + 2 · b2, w2 stored [out, in].
            .Initializer("w2", Gaussian(32 * 64, Math.Sqrt(2.0 / 64)), 32, 64)
            .Initializer("b2", Gaussian(32, 0.1), 32)
            .Node("Gemm", ["h1", "w2", "b2"], ["z2"], "", OnnxAttribute.Int("transB", 1), OnnxAttribute.Float("alpha", 0.5f), OnnxAttribute.Float("beta", 2f))
            .Node("Relu", ["z2"], ["h2"])
            .Initializer("w3", Gaussian(32 * 16, Math.Sqrt(2.0 / 32)), 32, 16)
            .Node("MatMul", ["h2", "w3"], ["z3"])
            .Initializer("w_out", Gaussian(16, 0.5), 16, 1)
            .Node("MatMul", ["z3", "w_out"], ["logit"])
            .Node("Sigmoid", ["logit"], ["probability"])
            .OutputTensor("probability", OnnxGraph.Float, -1, 1);
        var file = Path.Combine(TempDir, "mlp.onnx");
        File.WriteAllBytes(file, graph.ToModel());
        var source = ModelImporter.Import(new ModelImportRequest(file, Repository, "mlp", "1"), Plan).Directory;

        var result = ModelQuantization.Run(new QuantizeRequest(source, new QuantizationOptions(type, MinDimension: 8)), Plan);
        Assert.Equal(["w1", "w2", "w3"], result.Report.Converted.Select(n => n.Weight));
        var ops = OpTypes(result.Directory);
        Assert.DoesNotContain("Gemm", ops);
        Assert.Equal(type == QuantizationType.Int8 ? 3 : 0, ops.Count(o => o == "MatMulInteger"));

        var rows = Rows(10_000, 11);
        var reference = Scores(source, rows);
        var converted = Scores(result.Directory, rows);
        var spread = reference.Max() - reference.Min();
        var diffs = reference.Zip(converted, (a, b) => Math.Abs(a - b)).ToArray();
        output.WriteLine($"{type}: max |Δ score| {diffs.Max():G3}, mean {diffs.Average():G3}, scores spread over {spread:0.###}");
        Assert.True(spread > 0.3, $"the scores spread over {spread} only: the graph does not exercise the layers");
        Assert.True(diffs.Max() <= tolerance, $"max |Δ score| {diffs.Max()}");
        // Same ranking, almost everywhere: the rank correlation of the two scorings.
        Assert.True(Spearman(reference, converted) > 0.995, $"rank correlation {Spearman(reference, converted)}");
    }

    [Fact]
    public void Refuses_WhatItCannotConvert_WithTheReason()
    {
        // A tree ensemble / ai.onnx.ml linear classifier: nothing to convert.
        var logreg = ModelRepository.CopyVersion(Path.Combine(AppContext.BaseDirectory, "models", "fraud-logreg", "3"), Repository);
        var e = Assert.Throws<InvalidDataException>(() => ModelQuantization.Run(new QuantizeRequest(logreg, new QuantizationOptions()), Plan));
        Assert.Contains("no MatMul or Gemm node", e.Message);

        var wide = WideMlpModel(hidden: 32);
        e = Assert.Throws<InvalidDataException>(() => ModelQuantization.Run(new QuantizeRequest(wide, new QuantizationOptions(MinDimension: 64)), Plan));
        Assert.Contains("none of its 5 MatMul/Gemm nodes can be converted", e.Message);

        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(wide, "model.onnx")));
        model.OpsetImport.Single(o => o.Domain == "").Version = 10;
        e = Assert.Throws<InvalidDataException>(() => OnnxQuantizer.Quantize(model, new QuantizationOptions()));
        Assert.Contains("opset 10", e.Message);
    }

    [Fact]
    public void SoftTargets_RecoverTheLogisticModelThatMadeThem()
    {
        // Targets are exactly sigmoid(w·x + b): fitted to them as soft labels, a logistic regression recovers w and b.
        var random = new Random(4);
        float[] w = [1.5f, -2f, 0.5f];
        const float b = -1f;
        var rows = Enumerable.Range(0, 4_000).Select(_ => new[] { (float)random.NextDouble() * 2 - 1, (float)random.NextDouble() * 2 - 1, (float)random.NextDouble() * 2 - 1 }).ToArray();
        var targets = rows.Select(r => 1 / (1 + Math.Exp(-(w[0] * r[0] + w[1] * r[1] + w[2] * r[2] + b)))).ToArray();
        var ml = new MLContext(seed: 1);
        var model = MlNetModels.Fit(ml, MlNetModels.SoftTargetView(ml, rows, targets), new TrainerSettings(TrainerKind.LogisticRegression), MlNetModels.WeightColumn);
        var (fitted, bias) = MlNetModels.LinearModel(model);
        output.WriteLine($"fitted w = [{string.Join(", ", fitted.Select(v => v.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)))}], b = {bias:0.###}");
        for (var j = 0; j < w.Length; j++) Assert.Equal(w[j], fitted[j], 0.05);
        Assert.Equal(b, bias, 0.05);
    }

    [Fact]
    public async Task Distill_RecordsTeacherAndStudentAuc_OnTheSameHeldOutRows()
    {
        var (_, set) = await TrainingSetAsync(30_000, 23);
        var teacher = Trainer.Train(set, Plan, new TrainingTarget(Repository, "teacher", "1"));

        var report = Trainer.Train(set, Plan, new TrainingTarget(Repository, "teacher-student", "1"), new TrainerSettings(Trees: 20, Leaves: 8), teacher: teacher.ModelDirectory);
        var manifest = ModelManifest.Load(Path.Combine(report.ModelDirectory, "manifest.json"));
        var metrics = manifest.Metrics!;
        output.WriteLine(string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.Contains("--distill-from teacher@1", manifest.GeneratedBy);
        // The rows before the split, labelled or not, all of them: more than the labelled training rows.
        Assert.True(metrics["distill_rows"] > report.TrainRows, $"{metrics["distill_rows"]} distillation rows, {report.TrainRows} labelled training rows");

        // Both AUCs are on the teacher's held-out rows: recomputed here from the two models, they agree with the manifest.
        var heldOut = HeldOutRows.Select(set, ModelManifest.Load(Path.Combine(teacher.ModelDirectory, "manifest.json")));
        Assert.Equal((int)metrics["test_rows"], heldOut.Rows.Length);
        Assert.Equal(metrics["teacher_test_auc_same_rows"], heldOut.Auc(heldOut.Score(teacher.ModelDirectory, set, Plan)), 4);
        Assert.Equal(metrics["test_auc"], heldOut.Auc(heldOut.Score(report.ModelDirectory, set, Plan)), 4);
        Assert.True(metrics["test_auc"] > 0.8, $"student AUC {metrics["test_auc"]}");
        Assert.True(metrics["teacher_test_auc_same_rows"] - metrics["test_auc"] < 0.05, "the student lost more than 0.05 of AUC");

        // A teacher trained up to a later split has seen labels of this held-out period: refused, nothing written.
        var late = Trainer.Train(set, Plan, new TrainingTarget(Repository, "late-teacher", "1"), testFraction: 0.1);
        var e = Assert.Throws<InvalidDataException>(() =>
            Trainer.Train(set, Plan, new TrainingTarget(Repository, "late-teacher-student", "1"), new TrainerSettings(Trees: 20, Leaves: 8), teacher: late.ModelDirectory));
        Assert.Contains("it has seen the held-out period", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Repository, "late-teacher-student")));
    }

    [Fact]
    public async Task BenchVariants_ComparesTheModels_OnTheSameHeldOutRows()
    {
        var set = await TrainingSetAsync(8_000, 41);
        var source = WideMlpModel(hidden: 64);
        var int8 = ModelQuantization.Run(new QuantizeRequest(source, new QuantizationOptions()), Plan).Directory;
        var results = Path.Combine(TempDir, "model-benchmarks");
        var (code, stdout, stderr) = await TestCli.RunAsync(
            ["bench", "variants", "--model", source, "--model", int8, "--training-set", set.Path, "--batch-sizes", "1,4", "--seconds", "0.2",
             "--features", Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"), "--output", results], new Dictionary<string, string>());
        output.WriteLine(stderr);
        Assert.True(code == 0, stderr);

        var comparison = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(results + ".json"))!["comparisons"]!.AsArray().Single()!;
        var variants = comparison["variants"]!.AsArray().Select(v => v!).ToList();
        Assert.Equal(["wide@1", "wide-int8@1"], variants.Select(v => (string)v["model"]!));
        // No time split in these manifests: the latest 20 % of the labelled rows, for both models.
        var heldOut = HeldOutRows.Select(set.Data, null);
        Assert.Equal(heldOut.Rows.Length, (int)comparison["heldOutRows"]!);
        Assert.Equal(heldOut.Auc(heldOut.Score(source, set.Data, Plan)), (double)variants[0]["heldOutAuc"]!, 5);
        Assert.Equal(heldOut.Auc(heldOut.Score(int8, set.Data, Plan)), (double)variants[1]["heldOutAuc"]!, 5);
        Assert.Equal((double)variants[1]["batch256EventsPerSecond"]! / (double)variants[0]["batch256EventsPerSecond"]!, (double)variants[1]["speedupBatch256"]!, 2);
        Assert.All(variants, v => Assert.True((double)v["batch1EventsPerSecond"]! > 0 && (double)v["batch256EventsPerSecond"]! > 0));
        Assert.True((double)variants[1]["fileBytes"]! < (double)variants[0]["fileBytes"]!);
        Assert.Contains("| wide-int8@1 |", File.ReadAllText(results + ".md"));
    }

    private async Task<(string Path, TrainingSet Data)> TrainingSetAsync(int events, int seed)
    {
        var history = SyntheticHistory.Generate(Plan, new HistoryOptions { Events = events, Span = TimeSpan.FromDays(20), Seed = seed });
        var order = history.EventTimeOrder();
        var rows = PointInTimeFeatures.Compute(history, LookupTimeline.Compute(history, history.MaxTimeMs + 1, order), eventTimeOrder: order);
        var path = Path.Combine(TempDir, $"training-{seed}.parquet");
        await TrainingSet.WriteAsync(path, history, rows);
        return (path, await TrainingSet.ReadAsync(path));
    }

    private static double Spearman(double[] a, double[] b)
    {
        static double[] Ranks(double[] v)
        {
            var order = Enumerable.Range(0, v.Length).OrderBy(i => v[i]).ToArray();
            var ranks = new double[v.Length];
            for (var r = 0; r < order.Length; r++) ranks[order[r]] = r;
            return ranks;
        }
        var (ra, rb) = (Ranks(a), Ranks(b));
        var mean = (a.Length - 1) / 2.0;
        double num = 0, da = 0, db = 0;
        for (var i = 0; i < a.Length; i++)
        {
            num += (ra[i] - mean) * (rb[i] - mean);
            da += (ra[i] - mean) * (ra[i] - mean);
            db += (rb[i] - mean) * (rb[i] - mean);
        }
        return num / Math.Sqrt(da * db);
    }
}
