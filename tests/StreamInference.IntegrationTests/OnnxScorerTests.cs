using StreamInference.Batch.Onnx;
using StreamInference.Core.Offsets;

namespace StreamInference.IntegrationTests;

/// <summary>The common model output shapes, through real ONNX Runtime.</summary>
public sealed class OnnxScorerTests : IDisposable
{
    private static readonly FeaturePlan Plan = ShapesPlan(version: 1);

    private static FeaturePlan ShapesPlan(int version) => FeatureSetLoader.Parse($$"""
        featureSet: shapes
        version: {{version}}
        event: { idField: id, entityKeyField: key, timeField: ts }
        features:
          - { name: a, event: a, default: 0 }
          - { name: b, event: b, default: 0 }
          - { name: c, event: c, default: 0 }
        """);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "si-onnx-" + Guid.NewGuid().ToString("N"));
    private static readonly float[] W = [0.5f, -1f, 2f, 1f, 0f, -0.5f]; // [F=3, K=2] row-major
    private static readonly float[][] Rows = [[1f, 2f, 3f], [0f, 0f, 0f], [-1f, 0.5f, 2f]];

    private string Write(OnnxGraph graph, string? scoreOutput = null, string? labelOutput = null, int? primary = null)
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllBytes(Path.Combine(_dir, "model.onnx"), graph.ToModel());
        File.WriteAllText(Path.Combine(_dir, "manifest.json"), new ModelManifest
        {
            Name = "shape",
            Version = "1",
            FeatureSet = "shapes",
            FeatureSetVersion = 1,
            Features = ["a", "b", "c"],
            ScoreOutput = scoreOutput,
            LabelOutput = labelOutput,
            PrimaryScoreIndex = primary,
        }.ToJson());
        return _dir;
    }

    private static EventBatch Score(OnnxScorer scorer)
    {
        var batch = new EventBatch(Plan, 8, scorer.OutputWidth);
        var p = new PartitionOffsets("t", 0);
        for (var i = 0; i < Rows.Length; i++)
        {
            batch.Records[i] = new InputRecord(p, p.Track(i), i, null, null, 0, null);
            Rows[i].CopyTo(batch.FeatureRow(i));
        }
        batch.Count = Rows.Length;
        batch.CollectCleanRows();
        scorer.Score(batch);
        return batch;
    }

    private static double Dot(float[] x, int k) => x[0] * W[k] + x[1] * W[2 + k] + x[2] * W[4 + k];

    private string SingleColumnModel() => Write(new OnnxGraph("g").InputMatrix("features", 3)
        .Initializer("w", [W[0], W[2], W[4]], 3, 1)
        .Node("MatMul", ["features", "w"], ["y"])
        .OutputTensor("y", OnnxGraph.Float, -1, 1));

    [Theory]
    [InlineData("cpu", ExecutionDeviceKind.Cpu, 0)]
    [InlineData(" CUDA ", ExecutionDeviceKind.Cuda, 0)]
    [InlineData("cuda:3", ExecutionDeviceKind.Cuda, 3)]
    [InlineData("auto", ExecutionDeviceKind.Auto, 0)]
    public void Device_Parses(string text, ExecutionDeviceKind kind, int id)
    {
        Assert.True(ExecutionDevice.TryParse(text, out var device, out var error), error);
        Assert.Equal(new ExecutionDevice(kind, id), device);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("")]
    public void Device_RejectsOtherValues_NamingTheSetting(string text)
    {
        Assert.False(ExecutionDevice.TryParse(text, out _, out var error));
        Assert.Contains("Model:Device", error);
        var options = new StreamInference.Infrastructure.Processing.ProcessorOptions();
        options.Model.Device = text;
        Assert.Contains(StreamInference.Infrastructure.Processing.ProcessorOptionsValidator.Validate(options, p => p), e => e.Contains("Model:Device"));
    }

    /// <summary>
    /// On a machine without CUDA (CI): a CUDA request fails at load with the reason. With the Gpu flavor (the default on
    /// linux-x64) that is ONNX Runtime's own (the CUDA provider library or its CUDA libraries do not load); with the
    /// Cpu flavor, that this package has no CUDA provider and how to build one that does.
    /// </summary>
    [Fact]
    public void Device_Cuda_CannotBeMet_FailsAtLoadWithTheReason()
    {
        var dir = SingleColumnModel();
        var cuda = new OnnxScorerOptions { Device = new ExecutionDevice(ExecutionDeviceKind.Cuda, 0) };
        if (CudaPresent && OnnxScorer.PackageFlavor == "Gpu")
        {
            // A GPU machine with this build: the request is met instead.
            using var onGpu = new OnnxScorer(dir, Plan, cuda);
            Assert.Equal("cuda:0", onGpu.ExecutionProvider);
            return;
        }
        var e = Assert.Throws<InvalidOperationException>(() => new OnnxScorer(dir, Plan, cuda));
        Assert.Contains("Model:Device=cuda:0 cannot be met", e.Message);
        Assert.Contains("CUDA", e.Message);
        if (OnnxScorer.PackageFlavor == "Cpu")
        {
            Assert.Contains("-p:OnnxRuntimeFlavor=Gpu", e.Message);   // the way out is named
        }
        else
        {
            Assert.Equal("Gpu", OnnxScorer.PackageFlavor);
            Assert.Contains("CUDA 13", e.Message);                      // what the package needs, named
            Assert.Contains("libonnxruntime_providers_cuda", e.Message); // ONNX Runtime's reason, not ours
        }
    }

    /// <summary>An NVIDIA driver is loaded on this machine.</summary>
    private static bool CudaPresent => File.Exists("/proc/driver/nvidia/version");

    [Fact]
    public void Device_Auto_FallsBackToTheCpu_AndSaysWhy()
    {
        var dir = SingleColumnModel();
        using var scorer = new OnnxScorer(dir, Plan, new OnnxScorerOptions { Device = new ExecutionDevice(ExecutionDeviceKind.Auto, 0) });
        Assert.Equal("cpu", scorer.ExecutionProvider);
        Assert.NotNull(scorer.FallbackReason);
        Assert.Contains("CUDA", scorer.FallbackReason);
        var batch = Score(scorer);                                  // and it scores
        Assert.Equal(1 * 0.5f + 2 * 2f + 3 * 0f, (float)batch.ScoreRow(0)[0], 5);
    }

    [Fact]
    public void BatchAutotune_Chooses_TheSmallestBatchNearTheBestThroughput_WithinTheBudget()
    {
        static BatchMeasurement M(int size, double perSecond, double p99) => new(size, 10, perSecond, p99, p99, p99);
        var measured = new[] { M(1, 1_000, 0.5), M(2, 1_900, 0.6), M(4, 3_000, 1.0), M(8, 3_100, 2.0), M(16, 3_120, 4.0), M(32, 3_130, 30.0) };
        Assert.Equal(4, BatchSweep.Choose(measured, budgetMs: 10));    // 3,000 is within 5 % of the best fitting (3,120)
        Assert.Equal(2, BatchSweep.Choose(measured, budgetMs: 0.8));   // only 1 and 2 fit
        Assert.Equal(1, BatchSweep.Choose(measured, budgetMs: 0.1));   // nothing fits: the fastest single call
        Assert.Equal([1, 2, 4, 8, 16, 24], BatchSweep.Candidates(24).ToArray());

        // On a real session: a generous budget measures every candidate up to the ceiling; an
        // impossible one stops after the first and serves batches of 1.
        using var scorer = new OnnxScorer(SingleColumnModel(), Plan);
        var generous = BatchSweep.Autotune(scorer, Plan, 64, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(20));
        Assert.Equal([1, 2, 4, 8, 16, 32, 64], generous.Measurements.Select(m => m.BatchSize).ToArray());
        Assert.All(generous.Measurements, m => Assert.True(m.Runs >= 5 && m.EventsPerSecond > 0));
        Assert.Equal(BatchSweep.Choose(generous.Measurements, 5_000), generous.Chosen);
        var impossible = BatchSweep.Autotune(scorer, Plan, 64, TimeSpan.FromTicks(1), TimeSpan.FromMilliseconds(20));
        Assert.Single(impossible.Measurements);
        Assert.Equal(1, impossible.Chosen);
    }

    [Fact]
    public void Device_Cpu_RunsOnTheCpu()
    {
        using var scorer = new OnnxScorer(SingleColumnModel(), Plan, new OnnxScorerOptions { Device = ExecutionDevice.Cpu });
        Assert.Equal("cpu", scorer.ExecutionProvider);
        Assert.Null(scorer.FallbackReason);
    }

    [Fact]
    public void Scorer_ReadsSingleColumnOutput()
    {
        var dir = Write(new OnnxGraph("g").InputMatrix("features", 3)
            .Initializer("w", [W[0], W[2], W[4]], 3, 1)
            .Node("MatMul", ["features", "w"], ["y"])
            .OutputTensor("y", OnnxGraph.Float, -1, 1));
        using var scorer = new OnnxScorer(dir, Plan);
        Assert.Equal(1, scorer.OutputWidth);
        var batch = Score(scorer);
        for (var i = 0; i < Rows.Length; i++) Assert.Equal(Dot(Rows[i], 0), batch.ScoreRow(i)[0], 5);
    }

    [Fact]
    public void Scorer_ReadsMultiColumnOutput_PrimaryIsLastByDefault()
    {
        var dir = Write(new OnnxGraph("g").InputMatrix("features", 3)
            .Initializer("w", W, 3, 2)
            .Node("MatMul", ["features", "w"], ["y"])
            .OutputTensor("y", OnnxGraph.Float, -1, 2));
        using var scorer = new OnnxScorer(dir, Plan);
        Assert.Equal(2, scorer.OutputWidth);
        Assert.Equal(1, scorer.PrimaryScoreIndex);
        var batch = Score(scorer);
        for (var i = 0; i < Rows.Length; i++)
        {
            Assert.Equal(Dot(Rows[i], 0), batch.ScoreRow(i)[0], 5);
            Assert.Equal(Dot(Rows[i], 1), batch.ScoreRow(i)[1], 5);
        }
    }

    private static OnnxGraph Classifier(bool zipMap)
    {
        // ai.onnx.ml LinearClassifier → label (int64 [N]) + probabilities [N,2]; optionally ZipMap → seq(map(int64,float)).
        var g = new OnnxGraph("clf").InputMatrix("features", 3)
            .Node("LinearClassifier", ["features"], ["label", "probabilities"], "ai.onnx.ml",
                OnnxAttribute.Floats("coefficients", [W[0], W[2], W[4], W[1], W[3], W[5]]),
                OnnxAttribute.Floats("intercepts", [0f, 0f]),
                OnnxAttribute.Ints("classlabels_ints", [0, 1]),
                OnnxAttribute.Text("post_transform", "SOFTMAX"))
            .OutputTensor("label", OnnxGraph.Int64, -1);
        if (!zipMap) return g.OutputTensor("probabilities", OnnxGraph.Float, -1, 2);
        return g.Node("ZipMap", ["probabilities"], ["output_probability"], "ai.onnx.ml", OnnxAttribute.Ints("classlabels_int64s", [0, 1]))
            .OutputZipMap("output_probability");
    }

    /// <summary>A binary classifier with string classes ("legit", "fraud"): label string [N] + ZipMap seq(map(string, float)).</summary>
    private static OnnxGraph StringClassifier() =>
        new OnnxGraph("clf").InputMatrix("features", 3)
            .Node("LinearClassifier", ["features"], ["label", "probabilities"], "ai.onnx.ml",
                OnnxAttribute.Floats("coefficients", [W[0], W[2], W[4], W[1], W[3], W[5]]),
                OnnxAttribute.Floats("intercepts", [0f, 0f]),
                OnnxAttribute.Texts("classlabels_strings", ["legit", "fraud"]),
                OnnxAttribute.Text("post_transform", "SOFTMAX"))
            .OutputTensor("label", OnnxGraph.String, -1)
            .Node("ZipMap", ["probabilities"], ["output_probability"], "ai.onnx.ml", OnnxAttribute.Texts("classlabels_strings", ["legit", "fraud"]))
            .OutputZipMap("output_probability", OnnxGraph.String);

    /// <summary>
    /// A binary classifier's score is its positive class's probability: a primaryScoreIndex copied from another
    /// model that points at class 0 is refused at load (it served 2,500 inverted scores silently before), for
    /// probability tensors and ZipMaps alike; without one, the column of class 1 is chosen.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BinaryClassifier_ScoreIsThePositiveClass_AndAPrimaryIndexOnTheNegativeOneIsRefused(bool zipMap)
    {
        var e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(Write(Classifier(zipMap), primary: 0), Plan));
        Assert.Contains("primaryScoreIndex 0 would publish the probability of class 0", e.Message);
        Assert.Contains("positiveClass", e.Message);
        using var scorer = new OnnxScorer(Write(Classifier(zipMap)), Plan);
        Assert.Equal(1, scorer.PrimaryScoreIndex);
        if (zipMap) Assert.Equal(["0", "1"], scorer.ClassLabels);
    }

    /// <summary>Classes that are not 0/1 or false/true: the positive one must be named, and then it is used.</summary>
    [Fact]
    public void BinaryClassifier_WithNamedClasses_NeedsPositiveClass()
    {
        var e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(Write(StringClassifier()), Plan));
        Assert.Contains("positiveClass", e.Message);
        Assert.Contains("legit", e.Message);

        Directory.Delete(_dir, recursive: true);
        var dir = Write(StringClassifier());
        var manifest = ModelManifest.Load(Path.Combine(dir, "manifest.json"));
        manifest.PositiveClass = "fraud";
        File.WriteAllText(Path.Combine(dir, "manifest.json"), manifest.ToJson());
        using var scorer = new OnnxScorer(dir, Plan);
        // ONNX Runtime's maps list their keys in order: the columns are the classes as ClassLabels says.
        Assert.Equal(["fraud", "legit"], scorer.ClassLabels!.Order());
        Assert.Equal("fraud", scorer.ClassLabels![scorer.PrimaryScoreIndex]);
        var batch = Score(scorer);
        for (var i = 0; i < Rows.Length; i++)
        {
            var p1 = Math.Exp(Dot(Rows[i], 1)) / (Math.Exp(Dot(Rows[i], 0)) + Math.Exp(Dot(Rows[i], 1)));
            Assert.Equal(p1, batch.ScoreRow(i)[scorer.PrimaryScoreIndex], 4);
            Assert.Equal(p1 > 0.5 ? "fraud" : "legit", batch.Labels[i]);    // the label agrees with the score
        }
    }

    /// <summary>model inspect: the kind, the class labels and the score column, read from the graph and one warm-up row.</summary>
    [Fact]
    public void Inspect_TellsTheKind_Classes_AndScoreColumn()
    {
        Directory.CreateDirectory(_dir);
        string Save(OnnxGraph g, string name)
        {
            var path = Path.Combine(_dir, name + ".onnx");
            File.WriteAllBytes(path, g.ToModel());
            return path;
        }

        var zip = OnnxModelInspection.Inspect(Save(Classifier(zipMap: true), "zip"));
        Assert.Equal("binary classifier (label + class probabilities)", zip.Kind);
        Assert.Equal(["0", "1"], zip.ClassLabels);
        Assert.Equal(("output_probability", "label", 1, 2), (zip.ScoreOutput, zip.LabelOutput, zip.ScoreColumn, zip.ScoreColumns));
        Assert.Equal("dynamic", zip.BatchDimension);
        Assert.Contains(zip.Inputs, p => p is { Name: "features", Type: "float[N,3]" });

        var tensor = OnnxModelInspection.Inspect(Save(Classifier(zipMap: false), "tensor"));
        Assert.Equal(("binary classifier (label + class probabilities)", 1), (tensor.Kind, tensor.ScoreColumn));

        var named = OnnxModelInspection.Inspect(Save(StringClassifier(), "named"));
        Assert.Null(named.ScoreColumn);
        Assert.Contains(named.Notes, n => n.Contains("positiveClass", StringComparison.Ordinal));

        var fixedOne = OnnxModelInspection.Inspect(Save(new OnnxGraph("g").Input("features", OnnxGraph.Float, 1, 3)
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["features", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, 1, 1), "fixed"));
        Assert.Equal(("regressor (one score)", "fixed 1"), (fixedOne.Kind, fixedOne.BatchDimension));
        Assert.Contains(fixedOne.Notes, n => n.Contains("fixed batch dimension 1", StringComparison.Ordinal));

        var twoInputs = OnnxModelInspection.Inspect(Save(new OnnxGraph("g").InputMatrix("features", 3).Input("Label", OnnxGraph.Float, -1, 1)
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["features", "w"], ["m"]).Node("Add", ["m", "Label"], ["y"])
            .OutputTensor("y", OnnxGraph.Float, -1, 1), "two"));
        Assert.Equal("features", twoInputs.Layout.Matrix);
        Assert.Equal(["Label"], twoInputs.Layout.Extra);
        Assert.Contains(twoInputs.Notes, n => n.Contains("input 'Label' is not a feature", StringComparison.Ordinal));
    }

    /// <summary>Inputs the manifest does not say how to feed are refused at load with what to do, not discovered batch by batch.</summary>
    [Fact]
    public void Scorer_RefusesAnInputItCannotFeed_WithAdvice()
    {
        var withLabel = new OnnxGraph("g").InputMatrix("features", 3).Input("Label", OnnxGraph.Float, -1, 1)
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["features", "w"], ["m"]).Node("Add", ["m", "Label"], ["y"])
            .OutputTensor("y", OnnxGraph.Float, -1, 1);
        var e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(Write(withLabel), Plan));
        Assert.Contains("input(s) Label would not be fed", e.Message);
        Assert.Contains("re-export the model without them", e.Message);
    }

    /// <summary>
    /// model import: the manifest comes from the graph and the feature set; what the graph leaves open is refused with the
    /// option that settles it; the imported version loads and scores as the scorer would run it.
    /// </summary>
    [Fact]
    public void Import_InfersTheManifest_RefusesAmbiguity_WithTheOptionThatSettlesIt()
    {
        Directory.CreateDirectory(_dir);
        var repository = Path.Combine(_dir, "repo");
        string Save(OnnxGraph g, string name)
        {
            var path = Path.Combine(_dir, name + ".onnx");
            File.WriteAllBytes(path, g.ToModel());
            return path;
        }

        var zip = ModelImporter.Import(new ModelImportRequest(Save(Classifier(zipMap: true), "zip"), repository, "clf"), Plan);
        Assert.Equal(("clf", "1", "binary classifier (label + class probabilities)"), (zip.Manifest.Name, zip.Manifest.Version, zip.Kind));
        Assert.Equal(("features", "output_probability", "label"), (zip.Manifest.Input, zip.Manifest.ScoreOutput, zip.Manifest.LabelOutput));
        Assert.Equal(["a", "b", "c"], zip.Manifest.Features);
        using (var scorer = new OnnxScorer(ModelRepository.Resolve(repository, "clf", "latest"), Plan))
        {
            var batch = Score(scorer);
            for (var i = 0; i < Rows.Length; i++)   // the positive class's probability, as a direct softmax of the same rows
                Assert.Equal(Math.Exp(Dot(Rows[i], 1)) / (Math.Exp(Dot(Rows[i], 0)) + Math.Exp(Dot(Rows[i], 1))), batch.ScoreRow(i)[scorer.PrimaryScoreIndex], 4);
        }
        Assert.Equal("2", ModelImporter.Import(new ModelImportRequest(Save(Classifier(zipMap: false), "tensor"), repository, "clf"), Plan).Manifest.Version);

        var named = Save(StringClassifier(), "named");
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Import(new ModelImportRequest(named, repository, "named"), Plan));
        Assert.Contains("--positive-class", e.Message);
        Assert.False(Directory.Exists(Path.Combine(repository, "named", "1")));
        Assert.Equal("fraud", ModelImporter.Import(new ModelImportRequest(named, repository, "named", PositiveClass: "fraud"), Plan).Manifest.PositiveClass);

        // Two float outputs, neither named for probabilities: ambiguous until --score-output says which.
        var twoScores = Save(new OnnxGraph("g").InputMatrix("features", 3).Initializer("w", [1f, 1f, 1f], 3, 1)
            .Node("MatMul", ["features", "w"], ["raw"]).Node("Sigmoid", ["raw"], ["squashed"])
            .OutputTensor("raw", OnnxGraph.Float, -1, 1).OutputTensor("squashed", OnnxGraph.Float, -1, 1), "two-scores");
        e = Assert.Throws<InvalidDataException>(() => ModelImporter.Import(new ModelImportRequest(twoScores, repository, "reg"), Plan));
        Assert.Contains("--score-output", e.Message);
        Assert.Equal("squashed", ModelImporter.Import(new ModelImportRequest(twoScores, repository, "reg", ScoreOutput: "squashed"), Plan).Manifest.ScoreOutput);

        // With one of them named for probabilities (skl2onnx, ML.NET), that one is the score.
        var probability = Save(new OnnxGraph("g").InputMatrix("features", 3).Initializer("w", [1f, 1f, 1f], 3, 1)
            .Node("MatMul", ["features", "w"], ["raw"]).Node("Sigmoid", ["raw"], ["probability"])
            .OutputTensor("raw", OnnxGraph.Float, -1, 1).OutputTensor("probability", OnnxGraph.Float, -1, 1), "probability");
        Assert.Equal("probability", ModelImporter.Import(new ModelImportRequest(probability, repository, "prob"), Plan).Manifest.ScoreOutput);
    }

    /// <summary>A model copied into another repository path keeps its old manifest identity: refused, naming both.</summary>
    [Fact]
    public void Repository_RefusesAManifestWhoseIdentityIsNotItsPath()
    {
        var repository = Path.Combine(_dir, "repo");
        var version = Path.Combine(repository, "fraud-tree", "1");
        Directory.CreateDirectory(version);
        File.WriteAllText(Path.Combine(version, "model.onnx"), "");
        File.WriteAllText(Path.Combine(version, "manifest.json"), new ModelManifest { Name = "fraud-logreg", Version = "2" }.ToJson());
        foreach (var v in new[] { "1", "latest" })
        {
            var e = Assert.Throws<InvalidDataException>(() => ModelRepository.Resolve(repository, "fraud-tree", v));
            Assert.Contains("fraud-logreg@2", e.Message);
            Assert.Contains("fraud-tree@1", e.Message);
        }
        File.WriteAllText(Path.Combine(version, "manifest.json"), new ModelManifest { Name = "fraud-tree", Version = "1" }.ToJson());
        Assert.Equal(version, ModelRepository.Resolve(repository, "fraud-tree", "latest"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Scorer_ReadsClassifierLabelAndProbabilities_TensorOrZipMap(bool zipMap)
    {
        using var scorer = new OnnxScorer(Write(Classifier(zipMap)), Plan);
        Assert.Equal(2, scorer.OutputWidth);
        Assert.True(scorer.HasLabels);
        var batch = Score(scorer);
        for (var i = 0; i < Rows.Length; i++)
        {
            var z0 = Dot(Rows[i], 0);
            var z1 = Dot(Rows[i], 1);
            var p1 = Math.Exp(z1) / (Math.Exp(z0) + Math.Exp(z1));
            Assert.Equal(1 - p1, batch.ScoreRow(i)[0], 4);
            Assert.Equal(p1, batch.ScoreRow(i)[1], 4);
            Assert.Equal(p1 > 0.5 ? "1" : "0", batch.Labels[i]);
        }
    }

    [Fact]
    public void Scorer_RefusesModelTrainedOnAnotherFeatureSetVersion()
    {
        var dir = Write(new OnnxGraph("g").InputMatrix("features", 3)
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["features", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1));
        var v2 = ShapesPlan(version: 2);
        var e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(dir, v2));
        Assert.Contains("'shapes' v1", e.Message);
        Assert.Contains("'shapes' v2", e.Message);
    }

    /// <summary>A manifest's features must be the feature set's, by name, each once; any subset and order is served.</summary>
    [Fact]
    public void Scorer_RefusesUnknownOrRepeatedFeatures()
    {
        var dir = Write(new OnnxGraph("g").InputMatrix("features", 3)
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["features", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1));
        var path = Path.Combine(dir, "manifest.json");
        var manifest = ModelManifest.Load(path);
        manifest.Features = ["a", "b", "zz"];
        File.WriteAllText(path, manifest.ToJson());
        var e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(dir, Plan));
        Assert.Contains("zz are not in feature set 'shapes'", e.Message);
        manifest.Features = ["a", "b", "a"];
        File.WriteAllText(path, manifest.ToJson());
        e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(dir, Plan));
        Assert.Contains("a are listed more than once", e.Message);
        manifest.Features = ["c", "b", "a"];
        File.WriteAllText(path, manifest.ToJson());
        using var reordered = new OnnxScorer(dir, Plan);
        var batch = Score(reordered);
        for (var i = 0; i < Rows.Length; i++) Assert.Equal(Rows[i].Sum(), batch.ScoreRow(i)[0], 5);
    }

    [Fact]
    public void Scorer_RejectsCorruptModelFile_WithItsPath()
    {
        var dir = Write(Classifier(false));
        File.WriteAllBytes(Path.Combine(dir, "model.onnx"), [1, 2, 3, 4]);
        var e = Assert.Throws<InvalidDataException>(() => new OnnxScorer(dir, Plan));
        Assert.Contains("model.onnx", e.Message);
    }

    [Fact]
    public void ExampleModel_InRepository_LoadsAgainstTheExampleFeatureSet()
    {
        var plan = FeatureSetLoader.LoadFile(Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"));
        var dir = ModelRepository.Resolve(Path.Combine(AppContext.BaseDirectory, "models"), "fraud-gbm", "latest");
        using var scorer = new OnnxScorer(dir, plan);
        Assert.Equal(1, scorer.OutputWidth);
        Assert.True(scorer.Manifest.Metrics!["test_auc"] > 0.8);
    }

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }
}
