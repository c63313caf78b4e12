using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using StreamInference.Batch.Scoring;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Batch.Training;

public sealed record TrainingReport(
    string ModelDirectory, int TrainRows, int TestRows, double TrainAuc, double TestAuc, double FraudRate, DateTimeOffset SplitAt,
    double OnnxMaxAbsDiff);

/// <summary>Where <c>train</c> writes: <c>&lt;Repository&gt;/&lt;Name&gt;/&lt;Version&gt;</c>; Replace overwrites an existing version.</summary>
public sealed record TrainingTarget(string Repository, string Name, string Version, bool Replace = false)
{
    public string Directory => Path.Combine(Repository, Name, Version);
}

/// <summary>
/// Trains an example model from a training set written by <c>backfill</c>: a time-based split (train on the
/// earlier period, evaluate on the later one, so the held-out AUC is honest about the future), an ML.NET
/// binary classifier (LightGBM or logistic regression), exported to ONNX with Microsoft.ML.OnnxConverter and
/// brought into the repository through <see cref="ModelImporter"/>, the same path as a model trained
/// anywhere else. The AUCs in the manifest are measured on the imported graph as ONNX Runtime scores it.
/// </summary>
public static class Trainer
{
    public const string LightGbmName = "fraud-gbm";
    public const string LogisticRegressionName = "fraud-logreg";

    /// <param name="teacher">
    /// Distillation: a model version directory whose scores the new model (the student) is fitted to, instead of the
    /// labels. Every row of the training period is a training row then, labelled or not (the teacher scores them all);
    /// the held-out rows are the same, and the teacher's AUC on them is recorded beside the student's.
    /// </param>
    public static TrainingReport Train(TrainingSet set, FeaturePlan plan, TrainingTarget target, TrainerSettings? settings = null,
        double testFraction = 0.2, WideMlpShape? wideMlp = null, int evalRows = 5_000, IProgress<string>? stage = null, string? teacher = null)
    {
        settings ??= new TrainerSettings();
        settings.Validate();
        if (wideMlp is not null && settings.Kind != TrainerKind.LogisticRegression)
            throw new ArgumentException("--architecture wide-mlp builds on the logistic regression: use it with --trainer logreg.");
        if (wideMlp is not null && teacher is not null)
            throw new ArgumentException("--distill-from trains a small student; --architecture wide-mlp is not one.");
        if (teacher is not null && !File.Exists(Path.Combine(teacher, "model.onnx")))
            throw new FileNotFoundException($"--distill-from '{teacher}' is not a model version directory (model.onnx and manifest.json).");
        if (set.FeatureSet != plan.Name || set.FeatureSetVersion != plan.Version)
            throw new InvalidDataException($"The training set was built with feature set '{set.FeatureSet}' v{set.FeatureSetVersion}, " +
                                           $"the loaded definitions are '{plan.Name}' v{plan.Version}: run backfill again.");
        var expected = plan.Features.Select(f => f.Name).ToArray();
        if (!set.FeatureNames.SequenceEqual(expected))
            throw new InvalidDataException($"The training set's columns [{string.Join(", ", set.FeatureNames)}] differ from the feature set's [{string.Join(", ", expected)}].");
        if (testFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(testFraction), "The test fraction must be between 0 and 1.");
        if (!target.Replace && System.IO.Directory.Exists(target.Directory) && System.IO.Directory.EnumerateFileSystemEntries(target.Directory).Any())
            throw new InvalidOperationException($"'{target.Directory}' already exists: --replace overwrites it (once the new model is complete), or choose another --out.");

        var labelled = Enumerable.Range(0, set.Count).Where(i => double.IsFinite(set.Labels[i])).OrderBy(i => set.TimesMs[i]).ToArray();
        if (labelled.Length < 100) throw new InvalidDataException($"Only {labelled.Length} labelled rows; at least 100 are needed.");
        var cut = (int)(labelled.Length * (1 - testFraction));
        var splitAt = set.TimesMs[labelled[cut]];

        float[] Row(int i) => set.Row(i).ToArray();
        // Train only on rows whose label was known at the split (label.knownAfter), so the model is
        // fitted on what a training job run at the split time could have seen.
        var train = labelled[..cut].Where(i => set.TimesMs[i] < splitAt && set.TimesMs[i] + plan.LabelKnownAfterMs <= splitAt).ToArray();
        // The held-out period is every labelled row at or after the split, as HeldOutRows selects it from the manifest's split_at_ms.
        var test = labelled.Where(i => set.TimesMs[i] >= splitAt).ToArray();
        var trainX = train.Select(Row).ToArray();
        var trainY = train.Select(i => set.Labels[i] > 0.5).ToArray();
        var testX = test.Select(Row).ToArray();
        var testY = test.Select(i => set.Labels[i] > 0.5).ToArray();
        if (trainY.All(v => v) || !trainY.Any(v => v) || testY.All(v => v) || !testY.Any(v => v))
            throw new InvalidDataException("Both periods need positive and negative labels.");
        var fraudRate = labelled.Count(i => set.Labels[i] > 0.5) / (double)labelled.Length;

        var ml = new MLContext(seed: settings.Seed);
        ITransformer model;
        Distillation? distillation = null;
        if (teacher is null)
        {
            stage?.Report($"fitting {settings.Describe()} on {trainX.Length:N0} rows");
            model = MlNetModels.Fit(ml, MlNetModels.View(ml, trainX, trainY), settings);
        }
        else
        {
            using var teacherScorer = new OnnxScorer(teacher, plan);
            // A teacher fitted on labels of this held-out period would carry them into the student and flatter its own AUC.
            if (teacherScorer.Manifest.Metrics?.GetValueOrDefault("split_at_ms") is > 0 and var teacherSplit && (long)teacherSplit > splitAt)
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                    $"The teacher {teacherScorer.ModelName}@{teacherScorer.ModelVersion} was trained on labels up to {DateTimeOffset.FromUnixTimeMilliseconds((long)teacherSplit):yyyy-MM-ddTHH:mm:ssZ}, ") +
                    string.Create(CultureInfo.InvariantCulture, $"after this split at {DateTimeOffset.FromUnixTimeMilliseconds(splitAt):yyyy-MM-ddTHH:mm:ssZ}: it has seen the held-out period. ") +
                    "Use a --test-fraction whose split is at or after the teacher's (its manifest's split_at_ms), or the teacher's own training set.");
            // Every row before the split: the teacher's score needs no label.
            var studentRows = Enumerable.Range(0, set.Count).Where(i => set.TimesMs[i] < splitAt).ToArray();
            stage?.Report($"scoring {studentRows.Length:N0} training-period rows and {testX.Length:N0} held-out rows with the teacher {teacherScorer.ModelName}@{teacherScorer.ModelVersion}");
            var studentX = studentRows.Select(Row).ToArray();
            var targets = Score(teacherScorer, plan, studentX, [.. Enumerable.Range(0, studentX.Length)]);
            var outside = targets.Where(t => !(t is >= 0 and <= 1)).Take(1).ToArray();
            if (outside.Length > 0)
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                    $"The teacher {teacherScorer.ModelName}@{teacherScorer.ModelVersion} scored a row {outside[0]}: a student is fitted to probabilities in [0, 1] (a classifier's positive-class probability), not to raw scores."));
            var teacherTest = Score(teacherScorer, plan, testX, [.. Enumerable.Range(0, testX.Length)]);
            distillation = new Distillation($"{teacherScorer.ModelName}@{teacherScorer.ModelVersion}", studentRows.Length, teacherTest,
                teacherScorer.Manifest.Metrics?.GetValueOrDefault("parameters"));
            stage?.Report($"fitting {settings.Describe()} to the teacher's scores on {studentRows.Length:N0} rows");
            model = MlNetModels.Fit(ml, MlNetModels.SoftTargetView(ml, studentX, targets), settings, MlNetModels.WeightColumn);
        }
        var mlTest = MlNetProbabilities(ml, model, testX, testY);

        var f = plan.FeatureCount;
        var split = DateTimeOffset.FromUnixTimeMilliseconds(splitAt);
        var description = distillation is { } d
            ? $"Card-payment fraud probability: {settings.Describe()}, distilled from {d.Teacher} (fitted to its scores on {d.Rows:N0} training-period rows) on feature set {plan.Name} v{plan.Version}."
            : wideMlp is null
            ? $"Card-payment fraud probability: {settings.Describe()}, time-split training on feature set {plan.Name} v{plan.Version}."
            : string.Create(CultureInfo.InvariantCulture,
                $"Card-payment fraud probability: logistic regression plus a residual ReLU MLP ({wideMlp.Layers} x {wideMlp.Hidden}, seed {wideMlp.Seed}, {wideMlp.Parameters(f):N0} parameters) on feature set {plan.Name} v{plan.Version}.");

        var exported = Path.Combine(Path.GetTempPath(), $"si-train-{Guid.NewGuid():N}.onnx");
        string? staging = null;
        try
        {
            if (wideMlp is null)
            {
                stage?.Report("exporting ONNX (Microsoft.ML.OnnxConverter)");
                MlNetModels.ExportOnnx(ml, model, f, exported);
            }
            else
            {
                var (weights, bias) = MlNetModels.LinearModel(model);
                var (mean, std) = Standardization(trainX);
                File.WriteAllBytes(exported, WideMlp.Build(target.Name.Replace('-', '_'), weights, bias, mean, std, wideMlp).ToModel(docString: description));
            }

            // --replace: the new version is imported beside the repository and moved into place only once it is
            // complete, so a failed run leaves the old version as it was.
            staging = target.Replace && System.IO.Directory.Exists(target.Directory)
                ? Path.Combine(target.Repository, $".staging-{Guid.NewGuid():N}") : null;
            stage?.Report($"importing into {target.Directory}");
            var imported = ModelImporter.Import(new ModelImportRequest(exported, staging ?? target.Repository, target.Name, target.Version, Description: description), plan);

            // Measure what serve will run: the imported graph, scored by ONNX Runtime through the serving scorer.
            stage?.Report("scoring the held-out period with ONNX Runtime");
            // The wide MLP is costly on a CPU: it is measured on at most evalRows evenly spaced rows of each period.
            var testRows = Spaced(testX.Length, wideMlp is null ? int.MaxValue : evalRows);
            var trainRows = Spaced(trainX.Length, wideMlp is null ? int.MaxValue : evalRows);
            double[] testScores, trainScores;
            using (var scorer = new OnnxScorer(imported.Directory, plan))
            {
                testScores = Score(scorer, plan, testX, testRows);
                trainScores = Score(scorer, plan, trainX, trainRows);
            }
            var testAuc = MlNetModels.Auc(testScores, [.. testRows.Select(i => testY[i])]);
            var trainAuc = MlNetModels.Auc(trainScores, [.. trainRows.Select(i => trainY[i])]);
            var diff = wideMlp is null ? testRows.Select((i, k) => Math.Abs(testScores[k] - mlTest[i])).Max() : double.NaN;

            var manifest = imported.Manifest;
            manifest.ScoreMeaning = "probability that the payment is fraudulent";
            manifest.Metrics = new Dictionary<string, double>
            {
                ["train_auc"] = Math.Round(trainAuc, 4),
                ["test_auc"] = Math.Round(testAuc, 4),
                ["train_rows"] = trainX.Length,
                ["test_rows"] = testX.Length,
                ["fraud_rate"] = Math.Round(fraudRate, 4),
                ["split_at_ms"] = splitAt,
            };
            if (wideMlp is null)
            {
                // ONNX Runtime on the exported graph against ML.NET on the fitted model, same rows.
                manifest.Metrics["onnx_max_abs_diff"] = Math.Round(diff, 7);
            }
            else
            {
                manifest.Metrics["test_auc_rows"] = testRows.Length;
                // The logistic regression alone on the same rows: the comparison that isolates the residual branch.
                manifest.Metrics["logreg_test_auc_same_rows"] = Math.Round(MlNetModels.Auc([.. testRows.Select(i => mlTest[i])], [.. testRows.Select(i => testY[i])]), 4);
                manifest.Metrics["parameters"] = wideMlp.Parameters(f);
                manifest.Metrics["multiply_adds_per_row"] = wideMlp.MultiplyAddsPerRow(f);
            }
            if (distillation is { } distilled)
            {
                // Teacher and student on the same held-out rows: the accuracy the cheaper model costs, and how closely it follows.
                manifest.Metrics["teacher_test_auc_same_rows"] = Math.Round(MlNetModels.Auc(distilled.TeacherTestScores, testY), 4);
                manifest.Metrics["teacher_mean_abs_score_diff"] = Math.Round(testScores.Zip(distilled.TeacherTestScores, (a, b) => Math.Abs(a - b)).Average(), 6);
                manifest.Metrics["distill_rows"] = distilled.Rows;
                if (distilled.TeacherParameters is > 0 and var p) manifest.Metrics["teacher_parameters"] = p;
            }
            manifest.GeneratedBy = string.Create(CultureInfo.InvariantCulture,
                $"streaminference train {(wideMlp is null ? settings.Flags() : $"--trainer logreg --architecture wide-mlp --hidden {wideMlp.Hidden} --layers {wideMlp.Layers} --seed {wideMlp.Seed}")}" +
                $"{(distillation is null ? "" : $" --distill-from {distillation.Teacher}")} " +
                $"(ML.NET, time split at {split:yyyy-MM-ddTHH:mm:ssZ}, test fraction {testFraction})");
            File.WriteAllText(Path.Combine(imported.Directory, "manifest.json"), manifest.ToJson() + "\n");
            if (staging is not null)
            {
                System.IO.Directory.Delete(target.Directory, recursive: true);
                System.IO.Directory.Move(imported.Directory, target.Directory);
            }
            return new TrainingReport(target.Directory, trainX.Length, testX.Length, trainAuc, testAuc, fraudRate, split, diff);
        }
        finally
        {
            File.Delete(exported);
            if (staging is not null && System.IO.Directory.Exists(staging)) System.IO.Directory.Delete(staging, recursive: true);
        }
    }

    /// <param name="TeacherTestScores">The teacher's scores of the held-out rows, in their order.</param>
    private sealed record Distillation(string Teacher, int Rows, double[] TeacherTestScores, double? TeacherParameters);

    private static int[] Spaced(int count, int limit)
    {
        var step = Math.Max(1, (int)Math.Ceiling(count / (double)Math.Max(1, limit)));
        return [.. Enumerable.Range(0, count).Where(i => i % step == 0)];
    }

    /// <summary>The primary scores of the rows <paramref name="rows"/> of <paramref name="x"/>, in that order.</summary>
    private static double[] Score(OnnxScorer scorer, FeaturePlan plan, float[][] x, int[] rows) =>
        RowScoring.PrimaryScores(scorer, plan, rows.Length, k => x[rows[k]]);

    /// <summary>The fitted model's probabilities as ML.NET computes them.</summary>
    private static double[] MlNetProbabilities(MLContext ml, ITransformer model, float[][] x, bool[] y)
    {
        var scored = model.Transform(MlNetModels.View(ml, x, y));
        return [.. scored.GetColumn<float>("Probability").Select(p => (double)p)];
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
}
