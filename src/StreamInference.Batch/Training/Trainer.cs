using System.Globalization;
using StreamInference.Batch.Onnx;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Batch.Training;

public sealed record TrainingReport(
    string ModelDirectory, int TrainRows, int TestRows, double TrainAuc, double TestAuc, double FraudRate, DateTimeOffset SplitAt);

/// <summary>
/// Trains the example model from a training set written by <c>backfill</c>: a time-based split (train
/// on the earlier period, evaluate on the later one, so the held-out AUC is honest about the future),
/// logistic regression, an ONNX graph (MatMul → Add → Sigmoid) and a manifest pinning the feature set.
/// </summary>
public static class Trainer
{
    public const string DefaultName = "fraud-logreg";

    public static TrainingReport Train(TrainingSet set, FeaturePlan plan, string modelDirectory, string name, string version,
        double testFraction = 0.2, IProgress<int>? progress = null, int iterations = 25, WideMlpShape? wideMlp = null, int evalRows = 5_000)
    {
        if (set.FeatureSet != plan.Name || set.FeatureSetVersion != plan.Version)
            throw new InvalidDataException($"The training set was built with feature set '{set.FeatureSet}' v{set.FeatureSetVersion}, " +
                                           $"the loaded definitions are '{plan.Name}' v{plan.Version}: run backfill again.");
        var expected = plan.Features.Select(f => f.Name).ToArray();
        if (!set.FeatureNames.SequenceEqual(expected))
            throw new InvalidDataException($"The training set's columns [{string.Join(", ", set.FeatureNames)}] differ from the feature set's [{string.Join(", ", expected)}].");
        if (testFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(testFraction), "The test fraction must be between 0 and 1.");

        var labelled = Enumerable.Range(0, set.Count).Where(i => double.IsFinite(set.Labels[i])).OrderBy(i => set.TimesMs[i]).ToArray();
        if (labelled.Length < 100) throw new InvalidDataException($"Only {labelled.Length} labelled rows; at least 100 are needed.");
        var cut = (int)(labelled.Length * (1 - testFraction));
        var splitAt = set.TimesMs[labelled[cut]];

        float[] Row(int i) => set.Row(i).ToArray();
        // Train only on rows whose label was known at the split (label.knownAfter), so the model is
        // fitted on what a training job run at the split time could have seen.
        var train = labelled[..cut].Where(i => set.TimesMs[i] + plan.LabelKnownAfterMs <= splitAt).ToArray();
        var trainX = train.Select(Row).ToArray();
        var trainY = train.Select(i => set.Labels[i] > 0.5).ToArray();
        var testX = labelled[cut..].Select(Row).ToArray();
        var testY = labelled[cut..].Select(i => set.Labels[i] > 0.5).ToArray();
        if (trainY.All(v => v) || !trainY.Any(v => v) || testY.All(v => v) || !testY.Any(v => v))
            throw new InvalidDataException("Both periods need positive and negative labels.");

        var model = LogisticRegression.Fit(trainX, trainY, iterations: iterations, progress: progress);
        progress?.Report(iterations);
        var trainAuc = LogisticRegression.Auc(trainX.Select(r => model.Predict(r)).ToArray(), trainY);
        var testAuc = LogisticRegression.Auc(testX.Select(r => model.Predict(r)).ToArray(), testY);
        var fraudRate = labelled.Count(i => set.Labels[i] > 0.5) / (double)labelled.Length;

        Directory.CreateDirectory(modelDirectory);
        var f = plan.FeatureCount;
        OnnxGraph graph;
        string description;
        if (wideMlp is null)
        {
            graph = new OnnxGraph(name.Replace('-', '_'))
                .InputMatrix("features", f)
                .Initializer("weights", model.Weights.Select(w => (float)w).ToArray(), f, 1)
                .Initializer("bias", [(float)model.Bias], 1)
                .Node("MatMul", ["features", "weights"], ["logit_raw"])
                .Node("Add", ["logit_raw", "bias"], ["logit"])
                .Node("Sigmoid", ["logit"], ["probability"])
                .OutputTensor("probability", OnnxGraph.Float, -1, 1);
            description = $"Logistic regression on feature set {plan.Name} v{plan.Version}.";
        }
        else
        {
            var (mean, std) = Standardization(trainX);
            graph = WideMlp.Build(name.Replace('-', '_'), model, mean, std, wideMlp);
            description = string.Create(CultureInfo.InvariantCulture,
                $"Logistic regression plus a residual ReLU MLP ({wideMlp.Layers} x {wideMlp.Hidden}, seed {wideMlp.Seed}, {wideMlp.Parameters(f):N0} parameters) on feature set {plan.Name} v{plan.Version}.");
        }
        File.WriteAllBytes(Path.Combine(modelDirectory, "model.onnx"), graph.ToModel(docString: description));

        var split = DateTimeOffset.FromUnixTimeMilliseconds(splitAt);
        var manifest = new ModelManifest
        {
            Name = name,
            Version = version,
            Description = wideMlp is null
                ? "Card-payment fraud probability (logistic regression, time-split training)."
                : string.Create(CultureInfo.InvariantCulture, $"Card-payment fraud probability: {description}"),
            FeatureSet = plan.Name,
            FeatureSetVersion = plan.Version,
            Input = "features",
            Features = [.. expected],
            ScoreOutput = "probability",
            PrimaryScoreIndex = 0,
            ScoreMeaning = "probability that the payment is fraudulent",
            Metrics = new Dictionary<string, double>
            {
                ["train_auc"] = Math.Round(trainAuc, 4),
                ["test_auc"] = Math.Round(testAuc, 4),
                ["train_rows"] = trainX.Length,
                ["test_rows"] = testX.Length,
                ["fraud_rate"] = Math.Round(fraudRate, 4),
                ["split_at_ms"] = splitAt,
            },
            GeneratedBy = string.Create(CultureInfo.InvariantCulture,
                $"streaminference train{(wideMlp is null ? "" : $" --architecture wide-mlp --hidden {wideMlp.Hidden} --layers {wideMlp.Layers} --seed {wideMlp.Seed}")} (time split at {split:yyyy-MM-ddTHH:mm:ssZ}, test fraction {testFraction})"),
        };
        if (wideMlp is not null)
        {
            // The residual branch changes the scores: measure the exported graph itself, with ONNX Runtime.
            File.WriteAllText(Path.Combine(modelDirectory, "manifest.json"), manifest.ToJson() + "\n");
            (trainAuc, _, _) = GraphAuc(modelDirectory, plan, trainX, trainY, evalRows, model);
            (testAuc, var logregAuc, var rows) = GraphAuc(modelDirectory, plan, testX, testY, evalRows, model);
            manifest.Metrics!["train_auc"] = Math.Round(trainAuc, 4);
            manifest.Metrics!["test_auc"] = Math.Round(testAuc, 4);
            manifest.Metrics!["test_auc_rows"] = rows;
            // The logistic regression alone on the same rows: the comparison that isolates the residual branch.
            manifest.Metrics!["logreg_test_auc_same_rows"] = Math.Round(logregAuc, 4);
            manifest.Metrics!["parameters"] = wideMlp.Parameters(f);
            manifest.Metrics!["multiply_adds_per_row"] = wideMlp.MultiplyAddsPerRow(f);
        }
        File.WriteAllText(Path.Combine(modelDirectory, "manifest.json"), manifest.ToJson() + "\n");
        return new TrainingReport(modelDirectory, trainX.Length, testX.Length, trainAuc, testAuc, fraudRate, split);
    }

    private static (double[] Mean, double[] Std) Standardization(float[][] rows)
    {
        var f = rows[0].Length;
        var mean = new double[f];
        var std = new double[f];
        foreach (var row in rows)
            for (var j = 0; j < f; j++) mean[j] += row[j];
        for (var j = 0; j < f; j++) mean[j] /= rows.Length;
        foreach (var row in rows)
            for (var j = 0; j < f; j++) std[j] += (row[j] - mean[j]) * (row[j] - mean[j]);
        for (var j = 0; j < f; j++) std[j] = Math.Sqrt(std[j] / rows.Length);
        return (mean, std);
    }

    /// <summary>
    /// AUC of the model as ONNX Runtime scores it, and of the logistic regression alone, on the same
    /// evenly spaced rows (at most <paramref name="limit"/>), and how many rows that was.
    /// </summary>
    private static (double Graph, double LogReg, int Rows) GraphAuc(string modelDirectory, FeaturePlan plan, float[][] x, bool[] y, int limit, LogisticRegression model)
    {
        var step = Math.Max(1, (int)Math.Ceiling(x.Length / (double)Math.Max(1, limit)));
        var picked = Enumerable.Range(0, x.Length).Where(i => i % step == 0).ToArray();
        var features = new float[picked.Length * plan.FeatureCount];
        for (var k = 0; k < picked.Length; k++) x[picked[k]].CopyTo(features, k * plan.FeatureCount);
        using var scorer = new OnnxScorer(modelDirectory, plan);
        var scores = StreamInference.Batch.Scoring.RowScoring.PrimaryScores(scorer, plan, features, picked.Length);
        var labels = picked.Select(i => y[i]).ToArray();
        return (LogisticRegression.Auc(scores, labels), LogisticRegression.Auc(picked.Select(i => model.Predict(x[i])).ToArray(), labels), picked.Length);
    }
}
