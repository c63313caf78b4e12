using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using StreamInference.Batch.Onnx;
using StreamInference.Batch.Training;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Every model shape a team may bring, built in code: imported with <see cref="ModelImporter"/> (the manifest
/// inferred from the graph), loaded as serve loads it and scored through <see cref="OnnxScorer"/>; the published
/// score of each row is compared with a direct ONNX Runtime run of the same file on the same rows.
/// </summary>
public sealed class ModelImportShapesTests() : TempDirectoryTest("si-shapes-")
{
    private static readonly FeaturePlan Plan = FeatureSetLoader.Parse("""
        featureSet: shapes
        version: 1
        event: { idField: id, entityKeyField: key, timeField: ts }
        features:
          - { name: a, event: a, default: 0 }
          - { name: b, event: b, default: 0 }
          - { name: c, event: c, default: 0 }
        """);

    private static readonly float[] W = [0.5f, -1f, 2f, 1f, 0f, -0.5f]; // [F=3, K=2] row-major

    /// <summary>Rows around zero, with some far out; enough for more than one micro-batch shape.</summary>
    private static readonly float[][] Rows = [.. Enumerable.Range(0, 40).Select(i =>
    {
        var r = new Random(i);
        return new[] { (float)(r.NextDouble() * 6 - 3), (float)(r.NextDouble() * 6 - 3), i % 7 == 0 ? 40f : (float)(r.NextDouble() * 2 - 1) };
    })];

    private string Save(OnnxGraph graph, string name)
    {
        var path = Path.Combine(TempDir, name + ".onnx");
        File.WriteAllBytes(path, graph.ToModel());
        return path;
    }

    private string Repository => Path.Combine(TempDir, "repo");

    /// <summary>Imports the file, scores <see cref="Rows"/> through the serving scorer: the published score and label of each row.</summary>
    private (double[] Scores, string?[] Labels, ModelImportResult Import, List<string> Warnings) ImportAndServe(string file, string name, string? positiveClass = null)
    {
        var import = ModelImporter.Import(new ModelImportRequest(file, Repository, name, PositiveClass: positiveClass), Plan);
        using var scorer = new OnnxScorer(ModelRepository.Resolve(Repository, name, "latest"), Plan);
        var batch = new EventBatch(Plan, 64, scorer.OutputWidth);
        // A small batch first, then a larger one: the scorer's pooled input buffers must grow between them.
        foreach (var count in new[] { 3, Rows.Length })
        {
            for (var i = 0; i < count; i++) Rows[i].CopyTo(batch.FeatureRow(i));
            batch.OkCount = count;
            scorer.Score(batch);
        }
        return ([.. Enumerable.Range(0, Rows.Length).Select(i => batch.ScoreRow(i)[scorer.PrimaryScoreIndex])],
                [.. batch.Labels.Take(Rows.Length)], import, scorer.Warnings);
    }

    /// <summary>The model run directly with ONNX Runtime: the named output's values for each row, read as <paramref name="read"/> says.</summary>
    private static double[] Direct(string file, Func<int, NamedOnnxValue[]> feeds, string output, Func<DisposableNamedOnnxValue, int, double> read, bool oneRowPerRun = false)
    {
        using var session = new InferenceSession(file);
        if (!oneRowPerRun)
        {
            using var results = session.Run(feeds(-1), [output]);
            return [.. Enumerable.Range(0, Rows.Length).Select(i => read(results.First(), i))];
        }
        return [.. Enumerable.Range(0, Rows.Length).Select(i =>
        {
            using var results = session.Run(feeds(i), [output]);
            return read(results.First(), 0);
        })];
    }

    /// <summary>All rows as one [N, 3] tensor (row = -1), or one row as [1, 3].</summary>
    private static NamedOnnxValue Matrix(string name, int row)
    {
        var rows = row < 0 ? Rows : [Rows[row]];
        return NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(rows.SelectMany(r => r).ToArray(), [rows.Length, 3]));
    }

    private static double Column(DisposableNamedOnnxValue value, int row, int column, int width) => value.AsTensor<float>().ToArray()[row * width + column];

    private static double ZipMapValue<TKey>(DisposableNamedOnnxValue value, int row, TKey key) where TKey : notnull =>
        value.AsEnumerable<DisposableNamedOnnxValue>().ElementAt(row).AsDictionary<TKey, float>()[key];

    private static void AssertSame(double[] expected, double[] actual, double tolerance = 1e-6)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"row {i}: expected {expected[i]}, scored {actual[i]}");
    }

    private static OnnxGraph LinearClassifier(bool zipMap, bool stringClasses = false)
    {
        var g = new OnnxGraph("clf").InputMatrix("features", 3)
            .Node("LinearClassifier", ["features"], ["label", "probabilities"], "ai.onnx.ml",
                OnnxAttribute.Floats("coefficients", [W[0], W[2], W[4], W[1], W[3], W[5]]),
                OnnxAttribute.Floats("intercepts", [0f, 0.25f]),
                stringClasses ? OnnxAttribute.Texts("classlabels_strings", ["legit", "fraud"]) : OnnxAttribute.Ints("classlabels_ints", [0, 1]),
                OnnxAttribute.Text("post_transform", "SOFTMAX"))
            .OutputTensor("label", stringClasses ? OnnxGraph.String : OnnxGraph.Int64, -1);
        if (!zipMap) return g.OutputTensor("probabilities", OnnxGraph.Float, -1, 2);
        return g.Node("ZipMap", ["probabilities"], ["output_probability"], "ai.onnx.ml",
                stringClasses ? OnnxAttribute.Texts("classlabels_strings", ["legit", "fraud"]) : OnnxAttribute.Ints("classlabels_int64s", [0, 1]))
            .OutputZipMap("output_probability", stringClasses ? OnnxGraph.String : OnnxGraph.Int64);
    }

    [Fact]
    public void Regressor_FloatN1()
    {
        var file = Save(new OnnxGraph("g").InputMatrix("x", 3).Initializer("w", [W[0], W[2], W[4]], 3, 1)
            .Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1), "n1");
        var (scores, _, import, _) = ImportAndServe(file, "n1");
        Assert.Equal(("x", "y"), (import.Manifest.Input, import.Manifest.ScoreOutput));
        AssertSame(Direct(file, r => [Matrix("x", r)], "y", (v, i) => Column(v, i, 0, 1)), scores);
    }

    /// <summary>K scores per row, no label: the last column is the score (the documented default).</summary>
    [Fact]
    public void Scores_FloatNK()
    {
        var file = Save(new OnnxGraph("g").InputMatrix("x", 3).Initializer("w", W, 3, 2)
            .Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 2), "nk");
        var (scores, _, import, _) = ImportAndServe(file, "nk");
        Assert.Equal("2 scores per row", import.Kind);
        AssertSame(Direct(file, r => [Matrix("x", r)], "y", (v, i) => Column(v, i, 1, 2)), scores);
    }

    [Fact]
    public void BinaryClassifier_LabelAndProbabilityTensor()
    {
        var file = Save(LinearClassifier(zipMap: false), "tensor");
        var (scores, labels, import, _) = ImportAndServe(file, "tensor");
        Assert.Equal(("probabilities", "label"), (import.Manifest.ScoreOutput, import.Manifest.LabelOutput));
        AssertSame(Direct(file, r => [Matrix("features", r)], "probabilities", (v, i) => Column(v, i, 1, 2)), scores);
        Assert.Equal(scores.Select(s => s > 0.5 ? "1" : "0"), labels);   // the published label agrees with the score
    }

    [Fact]
    public void BinaryClassifier_ZipMapWithInt64Keys()
    {
        var file = Save(LinearClassifier(zipMap: true), "zip-int");
        var (scores, labels, _, _) = ImportAndServe(file, "zipint");
        AssertSame(Direct(file, r => [Matrix("features", r)], "output_probability", (v, i) => ZipMapValue(v, i, 1L)), scores);
        Assert.Equal(scores.Select(s => s > 0.5 ? "1" : "0"), labels);
    }

    [Fact]
    public void BinaryClassifier_ZipMapWithStringKeys_NeedsAndUsesThePositiveClass()
    {
        var file = Save(LinearClassifier(zipMap: true, stringClasses: true), "zip-text");
        var e = Assert.Throws<InvalidDataException>(() => ImportAndServe(file, "ziptext"));
        Assert.Contains("--positive-class", e.Message);
        var (scores, labels, _, _) = ImportAndServe(file, "ziptext", positiveClass: "fraud");
        AssertSame(Direct(file, r => [Matrix("features", r)], "output_probability", (v, i) => ZipMapValue(v, i, "fraud")), scores);
        Assert.Equal(scores.Select(s => s > 0.5 ? "fraud" : "legit"), labels);
    }

    /// <summary>
    /// ML.NET's LightGBM binary classifier exported by Microsoft.ML.OnnxConverter from its training view: inputs
    /// Features [N, 3] and Label [N, 1]; outputs Features.output, PredictedLabel.output, Score.output, Probability.output.
    /// Import picks Probability.output, feeds Label a constant after checking the score does not depend on it.
    /// </summary>
    [Fact]
    public void MlNetLightGbmExport_WithItsLabelInput()
    {
        var ml = new MLContext(seed: 1);
        var random = new Random(3);
        var x = Enumerable.Range(0, 2_000).Select(_ => new[] { (float)(random.NextDouble() * 6 - 3), (float)(random.NextDouble() * 6 - 3), (float)random.NextDouble() }).ToArray();
        var y = x.Select(r => r[0] - r[1] + random.NextDouble() > 0.5).ToArray();
        var view = MlNetModels.View(ml, x, y);
        var model = MlNetModels.Fit(ml, view, new TrainerSettings(TrainerKind.LightGbm, Trees: 20, Leaves: 8, MinLeafRows: 10));
        var file = Path.Combine(TempDir, "mlnet.onnx");
        using (var stream = File.Create(file)) ml.Model.ConvertToOnnx(model, view, stream);

        var info = OnnxModelInspection.Inspect(file);
        Assert.Equal(["Features", "Label"], info.Inputs.Select(p => p.Name));
        Assert.Contains("Score.output", info.ScoreCandidates);

        var (scores, labels, import, _) = ImportAndServe(file, "mlnet");
        Assert.Equal(("Features", "Probability.output", "PredictedLabel.output"), (import.Manifest.Input, import.Manifest.ScoreOutput, import.Manifest.LabelOutput));
        Assert.Equal(new Dictionary<string, double> { ["Label"] = 0 }, import.Manifest.ConstantInputs);
        var label = info.Inputs.Single(p => p.Name == "Label").Type;
        AssertSame(Direct(file, r => [Matrix("Features", r), LabelFeed(label, r < 0 ? Rows.Length : 1)], "Probability.output", (v, i) => Column(v, i, 0, 1)), scores);
        Assert.Equal(scores.Select(s => s > 0.5 ? "true" : "false"), labels);
        // ML.NET itself, on the same rows.
        var mlScores = model.Transform(MlNetModels.View(ml, Rows, [.. Rows.Select(_ => false)])).GetColumn<float>("Probability").ToArray();
        AssertSame([.. mlScores.Select(s => (double)s)], scores, tolerance: 1e-5);
    }

    private static NamedOnnxValue LabelFeed(string type, int rows) => type.StartsWith("bool", StringComparison.Ordinal)
        ? NamedOnnxValue.CreateFromTensor("Label", new DenseTensor<bool>(new bool[rows], [rows, 1]))
        : NamedOnnxValue.CreateFromTensor("Label", new DenseTensor<float>(new float[rows], [rows, 1]));

    /// <summary>A Label input the score does depend on cannot be fed a constant: refused, and nothing is left in the repository.</summary>
    [Fact]
    public void AnExtraInputTheScoreDependsOn_IsRefused()
    {
        var file = Save(new OnnxGraph("g").InputMatrix("features", 3).Input("Label", OnnxGraph.Float, -1, 1)
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["features", "w"], ["m"]).Node("Add", ["m", "Label"], ["y"])
            .OutputTensor("y", OnnxGraph.Float, -1, 1), "label-used");
        var e = Assert.Throws<InvalidDataException>(() => ImportAndServe(file, "used"));
        Assert.Contains("Label", e.Message);
        Assert.Contains("the score depends on them", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Repository, "used", "1")));
    }

    /// <summary>
    /// A score output that is not the positive class's probability (here: one minus it), beside a label output that says
    /// otherwise, is refused at import: the published label would contradict the published score.
    /// </summary>
    [Fact]
    public void AScoreThatContradictsTheLabel_IsRefused()
    {
        var file = Save(LinearClassifier(zipMap: false)
            .Initializer("ones", [1f, 1f], 2)
            .Node("Sub", ["ones", "probabilities"], ["complement"])
            .OutputTensor("complement", OnnxGraph.Float, -1, 2), "contradicts");
        var e = Assert.Throws<InvalidDataException>(() =>
            ModelImporter.Import(new ModelImportRequest(file, Repository, "contradicts", ScoreOutput: "complement"), Plan));
        Assert.Contains("label disagrees with its score", e.Message);
        Assert.Contains("--positive-class", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Repository, "contradicts", "1")));
        Assert.Equal("probabilities", ModelImporter.Import(new ModelImportRequest(file, Repository, "contradicts", ScoreOutput: "probabilities"), Plan).Manifest.ScoreOutput);
    }

    /// <summary>A regressor-style probability [N, 1] beside an int64 label [N, 1] (label = probability above 0.5).</summary>
    [Fact]
    public void Int64LabelBesideOneProbabilityColumn()
    {
        var file = Save(new OnnxGraph("g").InputMatrix("x", 3).Initializer("w", [W[0], W[2], W[4]], 3, 1).Initializer("half", [0.5f], 1)
            .Node("MatMul", ["x", "w"], ["raw"]).Node("Sigmoid", ["raw"], ["probability"])
            .Node("Greater", ["probability", "half"], ["positive"]).Node("Cast", ["positive"], ["label"], "", OnnxAttribute.Int("to", OnnxGraph.Int64))
            .OutputTensor("label", OnnxGraph.Int64, -1, 1).OutputTensor("probability", OnnxGraph.Float, -1, 1), "int64-label");
        var (scores, labels, import, _) = ImportAndServe(file, "int64label");
        Assert.Equal(("probability", "label"), (import.Manifest.ScoreOutput, import.Manifest.LabelOutput));
        AssertSame(Direct(file, r => [Matrix("x", r)], "probability", (v, i) => Column(v, i, 0, 1)), scores);
        Assert.Equal(scores.Select(s => s > 0.5 ? "1" : "0"), labels);
    }

    /// <summary>A bool label (the likelier class is class 1) beside two probability columns.</summary>
    [Fact]
    public void BoolLabelBesideTwoProbabilityColumns()
    {
        // The classifier's own int64 label stays internal: the graph's only label output is the bool.
        var file = Save(new OnnxGraph("clf").InputMatrix("features", 3)
            .Node("LinearClassifier", ["features"], ["internal_label", "probabilities"], "ai.onnx.ml",
                OnnxAttribute.Floats("coefficients", [W[0], W[2], W[4], W[1], W[3], W[5]]),
                OnnxAttribute.Floats("intercepts", [0f, 0.25f]),
                OnnxAttribute.Ints("classlabels_ints", [0, 1]),
                OnnxAttribute.Text("post_transform", "SOFTMAX"))
            .OutputTensor("probabilities", OnnxGraph.Float, -1, 2)
            .Node("ArgMax", ["probabilities"], ["likelier"], "", OnnxAttribute.Int("axis", 1), OnnxAttribute.Int("keepdims", 0))
            .Node("Cast", ["likelier"], ["is_positive"], "", OnnxAttribute.Int("to", 9))
            .OutputTensor("is_positive", 9, -1), "bool-label");
        var (scores, labels, _, _) = ImportAndServe(file, "boollabel");
        AssertSame(Direct(file, r => [Matrix("features", r)], "probabilities", (v, i) => Column(v, i, 1, 2)), scores);
        Assert.Contains(labels, l => l == "true");
        Assert.Equal(scores.Select(s => s > 0.5 ? "true" : "false"), labels);
    }

    /// <summary>
    /// One calibrated probability beside a label taken from the raw score (ML.NET's FastTree: label = raw > 0, probability =
    /// sigmoid(raw + offset)): they disagree near the threshold, and that is accepted. A probability that is the label's
    /// inverse is refused.
    /// </summary>
    [Fact]
    public void OneCalibratedColumn_MayDisagreeNearTheThreshold_ButAnInvertedOneIsRefused()
    {
        OnnxGraph Graph(bool inverted) => new OnnxGraph("g").InputMatrix("x", 3).Initializer("w", [1f, 1f, 1f], 3, 1)
            .Initializer("zero", [0f], 1).Initializer("offset", [inverted ? -1f : 1f], 1).Initializer("sign", [inverted ? -1f : 1f], 1)
            .Node("MatMul", ["x", "w"], ["raw"]).Node("Greater", ["raw", "zero"], ["label"])
            .Node("Mul", ["raw", "sign"], ["signed"]).Node("Add", ["signed", "offset"], ["calibrated"]).Node("Sigmoid", ["calibrated"], ["probability"])
            .OutputTensor("label", 9, -1, 1).OutputTensor("probability", OnnxGraph.Float, -1, 1);
        var calibrated = Save(Graph(inverted: false), "calibrated");
        var (scores, labels, _, _) = ImportAndServe(calibrated, "calibrated");
        Assert.Contains(Enumerable.Range(0, scores.Length), k => (labels[k] == "true") != (scores[k] > 0.5));   // the near-threshold disagreement exists
        AssertSame(Direct(calibrated, r => [Matrix("x", r)], "probability", (v, i) => Column(v, i, 0, 1)), scores);

        var e = Assert.Throws<InvalidDataException>(() => ImportAndServe(Save(Graph(inverted: true), "inverted"), "inverted"));
        Assert.Contains("label disagrees with its score", e.Message);
    }

    /// <summary>Outputs named for the wrong role are refused at load, in one line, not at the first batch.</summary>
    [Fact]
    public void OutputsOfTheWrongKind_AreRefusedAtImport()
    {
        var file = Save(LinearClassifier(zipMap: true), "roles");
        var e = Assert.Throws<InvalidDataException>(() => ModelImporter.Import(new ModelImportRequest(file, Repository, "roles", LabelOutput: "output_probability"), Plan));
        Assert.Contains("class labels are read from an int64, string or bool tensor", e.Message);
        e = Assert.Throws<InvalidDataException>(() => ModelImporter.Import(new ModelImportRequest(file, Repository, "roles", ScoreOutput: "label"), Plan));
        Assert.Contains("scores are read from a float tensor or a ZipMap", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Repository, "roles", "1")));
    }

    /// <summary>One input per feature with a fixed batch of 1: row by row, each column copied from its row.</summary>
    [Fact]
    public void OneInputPerFeature_WithAFixedBatchOfOne()
    {
        var file = Save(new OnnxGraph("g").Input("b", OnnxGraph.Float, 1, 1).Input("a", OnnxGraph.Float, 1, 1).Input("c", OnnxGraph.Float, 1, 1)
            .Node("Concat", ["a", "b", "c"], ["x"], "", OnnxAttribute.Int("axis", 1))
            .Initializer("w", [W[0], W[2], W[4]], 3, 1)
            .Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, 1, 1), "per-feature-1");
        var (scores, _, _, warnings) = ImportAndServe(file, "perfeature1");
        Assert.Single(warnings);
        Assert.Equal([.. Rows.Select(r => (double)(r[0] * W[0] + r[1] * W[2] + r[2] * W[4]))], scores, (x, y) => Math.Abs(x - y) < 1e-5);
    }

    /// <summary>
    /// A model that reads a subset of the feature set, in its own order: the matrix's columns are named with --columns
    /// (refused without it, since the width differs); the scorer projects them out of the feature vectors computed once.
    /// </summary>
    [Fact]
    public void MatrixOfASubset_InItsOwnOrder_NeedsColumns()
    {
        var file = Save(new OnnxGraph("g").InputMatrix("x", 2).Initializer("w", [2f, -1f], 2, 1)
            .Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1), "subset");
        var e = Assert.Throws<InvalidDataException>(() => ImportAndServe(file, "subset"));
        Assert.Contains("--columns", e.Message);
        var import = ModelImporter.Import(new ModelImportRequest(file, Repository, "subset", Columns: ["c", "a"]), Plan);
        Assert.Equal(["c", "a"], import.Manifest.Features);

        using var scorer = new OnnxScorer(import.Directory, Plan);
        var batch = new EventBatch(Plan, 64, scorer.OutputWidth);
        for (var i = 0; i < Rows.Length; i++) Rows[i].CopyTo(batch.FeatureRow(i));
        batch.OkCount = Rows.Length;
        scorer.Score(batch);
        var direct = Direct(file, r => [NamedOnnxValue.CreateFromTensor("x", new DenseTensor<float>(
            (r < 0 ? Rows : [Rows[r]]).SelectMany(row => new[] { row[2], row[0] }).ToArray(), [r < 0 ? Rows.Length : 1, 2]))], "y", (v, i) => Column(v, i, 0, 1));
        AssertSame(direct, [.. Enumerable.Range(0, Rows.Length).Select(i => batch.ScoreRow(i)[0])]);

        var bad = Assert.Throws<ArgumentException>(() => ModelImporter.Import(new ModelImportRequest(file, Repository, "subset2", Columns: ["c", "zz"]), Plan));
        Assert.Contains("zz", bad.Message);
    }

    /// <summary>One input per feature for a subset of the features: each named input is fed its feature; the others are not read.</summary>
    [Fact]
    public void OneInputPerFeature_ForASubset()
    {
        var file = Save(new OnnxGraph("g").Input("c", OnnxGraph.Float, -1, 1).Input("b", OnnxGraph.Float, -1, 1)
            .Node("Sub", ["c", "b"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1), "per-feature-subset");
        var (scores, _, import, _) = ImportAndServe(file, "perfeaturesubset");
        Assert.Equal(import.Manifest.FeatureInputs, import.Manifest.Features);
        Assert.Equal(2, import.Manifest.Features.Count);
        Assert.Equal([.. Rows.Select(r => (double)(r[2] - r[1]))], scores, (x, y) => Math.Abs(x - y) < 1e-5);
    }

    /// <summary>A fixed batch dimension of 1 is scored one row per run, with a warning; a larger fixed one is refused with advice.</summary>
    [Fact]
    public void FixedBatchOfOne_IsScoredRowByRow_WithAWarning()
    {
        var file = Save(new OnnxGraph("g").Input("x", OnnxGraph.Float, 1, 3).Initializer("w", W, 3, 2)
            .Node("MatMul", ["x", "w"], ["y"]).Node("Sigmoid", ["y"], ["p"]).OutputTensor("p", OnnxGraph.Float, 1, 2), "fixed1");
        var (scores, _, _, warnings) = ImportAndServe(file, "fixed1");
        Assert.Contains(warnings, w => w.Contains("fixed batch dimension of 1", StringComparison.Ordinal));
        AssertSame(Direct(file, r => [Matrix("x", r)], "p", (v, i) => Column(v, i, 1, 2), oneRowPerRun: true), scores);

        var four = Save(new OnnxGraph("g").Input("x", OnnxGraph.Float, 4, 3).Initializer("w", W, 3, 2)
            .Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, 4, 2), "fixed4");
        var e = Assert.Throws<InvalidDataException>(() => ImportAndServe(four, "fixed4"));
        Assert.Contains("fixed batch dimension of 4", e.Message);
        Assert.Contains("dynamic first dimension", e.Message);
    }

    /// <summary>One float [N, 1] input per feature, named after the features (onnxmltools with one initial type per column), in any order.</summary>
    [Fact]
    public void OneInputPerFeature_MappedByName()
    {
        var file = Save(new OnnxGraph("g").Input("c", OnnxGraph.Float, -1, 1).Input("a", OnnxGraph.Float, -1, 1).Input("b", OnnxGraph.Float, -1, 1)
            .Node("Concat", ["a", "b", "c"], ["x"], "", OnnxAttribute.Int("axis", 1))
            .Initializer("w", [W[0], W[2], W[4]], 3, 1)
            .Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1), "per-feature");
        var (scores, _, import, _) = ImportAndServe(file, "perfeature");
        Assert.NotNull(import.Manifest.FeatureInputs);   // fed per feature, by name: the scores below check the mapping
        NamedOnnxValue Column(string name, int j, int row)
        {
            var rows = row < 0 ? Rows : [Rows[row]];
            return NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>(rows.Select(r => r[j]).ToArray(), [rows.Length, 1]));
        }
        AssertSame(Direct(file, r => [Column("a", 0, r), Column("b", 1, r), Column("c", 2, r)], "y", (v, i) => ModelImportShapesTests.Column(v, i, 0, 1)), scores);

        var misnamed = Save(new OnnxGraph("g").Input("f0", OnnxGraph.Float, -1, 1).Input("f1", OnnxGraph.Float, -1, 1).Input("f2", OnnxGraph.Float, -1, 1)
            .Node("Concat", ["f0", "f1", "f2"], ["x"], "", OnnxAttribute.Int("axis", 1))
            .Initializer("w", [1f, 1f, 1f], 3, 1).Node("MatMul", ["x", "w"], ["y"]).OutputTensor("y", OnnxGraph.Float, -1, 1), "misnamed");
        var e = Assert.Throws<InvalidDataException>(() => ImportAndServe(misnamed, "misnamed"));
        Assert.Contains("--input", e.Message);
    }
}
