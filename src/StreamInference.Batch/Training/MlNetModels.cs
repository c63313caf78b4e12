using Microsoft.ML;
using Microsoft.ML.Calibrators;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;
using Microsoft.ML.Trainers.LightGbm;

namespace StreamInference.Batch.Training;

/// <summary>Which ML.NET trainer fits the example model (<c>train --trainer</c>).</summary>
public enum TrainerKind
{
    /// <summary>Gradient-boosted trees (ML.NET's LightGBM binary trainer): the example fraud model.</summary>
    LightGbm,

    /// <summary>L2-regularized logistic regression (ML.NET's L-BFGS trainer): the cheap alternative.</summary>
    LogisticRegression,
}

/// <summary>Hyper-parameters of the ML.NET trainers; the defaults are what the committed models were trained with.</summary>
public sealed record TrainerSettings(
    TrainerKind Kind = TrainerKind.LightGbm,
    int Trees = 200,
    int Leaves = 31,
    double LearningRate = 0.05,
    int MinLeafRows = 50,
    int Seed = 42)
{
    public void Validate()
    {
        if (Trees is < 1 or > 10_000) throw new ArgumentException($"--trees must be between 1 and 10000 (was {Trees}).");
        if (Leaves is < 2 or > 131_072) throw new ArgumentException($"--leaves must be between 2 and 131072 (was {Leaves}).");
        if (LearningRate is <= 0 or > 1) throw new ArgumentException($"--learning-rate must be in (0, 1] (was {LearningRate}).");
        if (MinLeafRows < 1) throw new ArgumentException($"--min-leaf-rows must be at least 1 (was {MinLeafRows}).");
    }

    public string Describe() => Kind switch
    {
        TrainerKind.LightGbm => FormattableString.Invariant($"LightGBM, {Trees} trees of at most {Leaves} leaves, learning rate {LearningRate}, at least {MinLeafRows} rows per leaf"),
        _ => "logistic regression (L-BFGS, L2 1e-3)",
    };

    public string Flags() => Kind switch
    {
        TrainerKind.LightGbm => FormattableString.Invariant($"--trainer lightgbm --trees {Trees} --leaves {Leaves} --learning-rate {LearningRate} --min-leaf-rows {MinLeafRows} --seed {Seed}"),
        _ => "--trainer logreg",
    };
}

/// <summary>
/// The ML.NET side of training: rows in, a fitted binary classifier out, exported to ONNX with
/// Microsoft.ML.OnnxConverter. Nothing here knows about the model repository; the export is brought in
/// through <c>ModelImporter</c> like any model trained elsewhere.
/// </summary>
public static class MlNetModels
{
    /// <summary>Column names of the training view (ML.NET's defaults, so the export's input is <c>Features</c>).</summary>
    public const string FeaturesColumn = "Features";
    public const string LabelColumn = "Label";
    public const string WeightColumn = "Weight";

    private sealed class Example
    {
        public float[] Features { get; set; } = [];
        public bool Label { get; set; }
    }

    private sealed class Weighted
    {
        public float[] Features { get; set; } = [];
        public bool Label { get; set; }
        public float Weight { get; set; }
    }

    private sealed class Unlabelled
    {
        public float[] Features { get; set; } = [];
    }

    private sealed class Scored
    {
        public float Score { get; set; }
        public bool Label { get; set; }
        public bool PredictedLabel { get; set; }   // the evaluator wants one; the AUC does not use it
    }

    public static IDataView View(MLContext ml, IReadOnlyList<float[]> rows, IReadOnlyList<bool> labels)
    {
        var width = rows.Count > 0 ? rows[0].Length : 0;
        var schema = SchemaDefinition.Create(typeof(Example));
        schema[FeaturesColumn].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return ml.Data.LoadFromEnumerable(rows.Select((r, i) => new Example { Features = r, Label = labels[i] }), schema);
    }

    /// <summary>
    /// Soft targets as a weighted binary view: each row twice, labelled true with weight p and false with weight 1 − p.
    /// A binary classifier's weighted log loss on it is the cross-entropy against p, so a standard ML.NET trainer fits
    /// the soft targets exactly (how a student is fitted to a teacher's probabilities).
    /// </summary>
    public static IDataView SoftTargetView(MLContext ml, IReadOnlyList<float[]> rows, IReadOnlyList<double> targets)
    {
        var width = rows.Count > 0 ? rows[0].Length : 0;
        var schema = SchemaDefinition.Create(typeof(Weighted));
        schema[FeaturesColumn].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return ml.Data.LoadFromEnumerable(rows.SelectMany((r, i) => new[]
        {
            new Weighted { Features = r, Label = true, Weight = (float)Math.Clamp(targets[i], 0, 1) },
            new Weighted { Features = r, Label = false, Weight = (float)(1 - Math.Clamp(targets[i], 0, 1)) },
        }).Where(w => w.Weight > 0), schema);
    }

    /// <summary>A view with only the feature column: what the ONNX export is built from, so the model has one input.</summary>
    private static IDataView FeaturesOnly(MLContext ml, int width)
    {
        var schema = SchemaDefinition.Create(typeof(Unlabelled));
        schema[FeaturesColumn].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return ml.Data.LoadFromEnumerable([new Unlabelled { Features = new float[width] }], schema);
    }

    /// <param name="weightColumn">The example-weight column (<see cref="WeightColumn"/> for a <see cref="SoftTargetView"/>), or null.</param>
    public static ITransformer Fit(MLContext ml, IDataView train, TrainerSettings settings, string? weightColumn = null)
    {
        settings.Validate();
        IEstimator<ITransformer> trainer = settings.Kind switch
        {
            TrainerKind.LightGbm => ml.BinaryClassification.Trainers.LightGbm(new LightGbmBinaryTrainer.Options
            {
                LabelColumnName = LabelColumn,
                FeatureColumnName = FeaturesColumn,
                ExampleWeightColumnName = weightColumn,
                NumberOfIterations = settings.Trees,
                NumberOfLeaves = settings.Leaves,
                LearningRate = settings.LearningRate,
                MinimumExampleCountPerLeaf = settings.MinLeafRows,
                Seed = settings.Seed,
                // One thread: the committed model is regenerated identically on any machine.
                NumberOfThreads = 1,
                Verbose = false,
                Silent = true,
            }),
            _ => ml.BinaryClassification.Trainers.LbfgsLogisticRegression(new LbfgsLogisticRegressionBinaryTrainer.Options
            {
                LabelColumnName = LabelColumn,
                FeatureColumnName = FeaturesColumn,
                ExampleWeightColumnName = weightColumn,
                L2Regularization = 1e-3f,
                L1Regularization = 0,
                OptimizationTolerance = 1e-8f,
                NumberOfThreads = 1,
            }),
        };
        try
        {
            return trainer.Fit(train);
        }
        catch (DllNotFoundException e) when (settings.Kind == TrainerKind.LightGbm)
        {
            throw new InvalidOperationException("LightGBM's native library (lib_lightgbm, from the LightGBM package) did not load; on Linux it needs OpenMP " +
                                                $"(apt-get install libgomp1). --trainer logreg needs no native library. ({e.Message})", e);
        }
    }

    /// <summary>
    /// The weights and bias of a fitted logistic regression on the raw features: its probability is
    /// sigmoid(w·x + b). ML.NET's calibrator for it is the Platt map 1 / (1 + exp(slope·s + offset)) with slope -1
    /// and offset 0, i.e. the plain sigmoid; that is checked here.
    /// </summary>
    public static (float[] Weights, float Bias) LinearModel(ITransformer model)
    {
        if (model is not BinaryPredictionTransformer<CalibratedModelParametersBase<LinearBinaryModelParameters, PlattCalibrator>> linear)
            throw new ArgumentException("The model is not an ML.NET calibrated linear binary classifier.", nameof(model));
        var calibrator = linear.Model.Calibrator;
        if (Math.Abs(calibrator.Slope + 1) > 1e-9 || Math.Abs(calibrator.Offset) > 1e-9)
            throw new InvalidOperationException(FormattableString.Invariant($"The logistic regression's calibrator is not the plain sigmoid (slope {calibrator.Slope}, offset {calibrator.Offset})."));
        return ([.. linear.Model.SubModel.Weights], linear.Model.SubModel.Bias);
    }

    /// <summary>Writes the fitted model as ONNX (Microsoft.ML.OnnxConverter), with the feature matrix as its only input.</summary>
    public static void ExportOnnx(MLContext ml, ITransformer model, int featureCount, string path)
    {
        using var stream = File.Create(path);
        ml.Model.ConvertToOnnx(model, FeaturesOnly(ml, featureCount), stream);
    }

    /// <summary>Area under the ROC curve of <paramref name="scores"/> against <paramref name="labels"/> (ML.NET's evaluator).</summary>
    public static double Auc(IReadOnlyList<double> scores, IReadOnlyList<bool> labels)
    {
        var ml = new MLContext(seed: 0);
        var view = ml.Data.LoadFromEnumerable(scores.Select((s, i) => new Scored { Score = (float)s, Label = labels[i], PredictedLabel = s >= 0.5 }));
        return ml.BinaryClassification.EvaluateNonCalibrated(view, LabelColumn, "Score").AreaUnderRocCurve;
    }
}
