using System.Globalization;
using StreamInference.Batch.Onnx;
using StreamInference.Batch.Profiling;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Batch.Training;

/// <summary>What <c>model quantize</c> is told.</summary>
/// <param name="Source">The model version directory to quantize.</param>
/// <param name="Repository">Where the quantized version goes (default: the source's repository).</param>
/// <param name="Name">Its model name (default: the source's name with <c>-int8</c> / <c>-fp16</c>).</param>
/// <param name="Version">Its version (default: the source's version, so that fraud-mlp@1 becomes fraud-mlp-int8@1).</param>
public sealed record QuantizeRequest(string Source, QuantizationOptions Options, string? Repository = null, string? Name = null, string? Version = null);

/// <param name="SourceAuc">The source model's AUC on the same held-out rows; NaN without a training set.</param>
/// <param name="MaxAbsScoreDiff">Largest |quantized − source| score over the held-out rows.</param>
public sealed record QuantizeResult(
    string Directory, ModelManifest Manifest, QuantizationReport Report, long SourceFileBytes, long FileBytes,
    HeldOutRows? HeldOut, double SourceAuc, double Auc, double MaxAbsScoreDiff, double MeanAbsScoreDiff);

/// <summary>
/// A cheaper variant of a model in the repository: its MatMul/Gemm weights quantized (<see cref="OnnxQuantizer"/>),
/// imported as a new model version through <see cref="ModelImporter"/> with the source's input, outputs and columns,
/// so it loads and serves like any model. With a training set it gets its own reference profile, and its AUC and the
/// source's are measured on the same held-out rows.
/// </summary>
public static class ModelQuantization
{
    public static QuantizeResult Run(QuantizeRequest request, FeaturePlan plan, TrainingSet? data = null, double testFraction = 0.2, IProgress<string>? stage = null)
    {
        var sourceDir = Path.GetFullPath(Path.TrimEndingDirectorySeparator(request.Source));
        var sourceModel = Path.Combine(sourceDir, "model.onnx");
        var manifestPath = Path.Combine(sourceDir, "manifest.json");
        if (!File.Exists(sourceModel) || !File.Exists(manifestPath))
            throw new FileNotFoundException($"'{request.Source}' is not a model version directory (model.onnx and manifest.json).");
        var source = ModelManifest.Load(manifestPath);
        var suffix = request.Options.Type == QuantizationType.Int8 ? "int8" : "fp16";
        var repository = request.Repository ?? Path.GetDirectoryName(Path.GetDirectoryName(sourceDir)!)!;
        var name = request.Name ?? $"{source.Name}-{suffix}";
        var version = request.Version ?? source.Version;
        if (data is not null && (data.FeatureSet != plan.Name || data.FeatureSetVersion != plan.Version))
            throw new InvalidDataException($"The training set was built with feature set '{data.FeatureSet}' v{data.FeatureSetVersion}, not '{plan.Name}' v{plan.Version}.");
        if (source.FeatureSet != plan.Name || source.FeatureSetVersion != plan.Version)
            throw new InvalidDataException($"{source.Name}@{source.Version} was trained on feature set '{source.FeatureSet}' v{source.FeatureSetVersion}, not '{plan.Name}' v{plan.Version}.");

        var target = Path.Combine(repository, name, version);
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw new InvalidOperationException($"'{target}' already exists: choose another --name or --version (versions are immutable once served).");

        var quantized = Path.Combine(Path.GetTempPath(), $"si-quantize-{Guid.NewGuid():N}.onnx");
        try
        {
            stage?.Report($"rewriting {source.Name}@{source.Version}: {request.Options.Describe()}");
            var report = OnnxQuantizer.Quantize(sourceModel, quantized, request.Options);
            stage?.Report($"importing as {name}@{version}");
            var imported = ModelImporter.Import(new ModelImportRequest(quantized, repository, name, version,
                Input: source.FeatureInputs is null ? source.Input : null, ScoreOutput: source.ScoreOutput, LabelOutput: source.LabelOutput,
                PositiveClass: source.PositiveClass, Description: $"{Capitalized(request.Options.Describe())} of {source.Name}@{source.Version}. {source.Description}".Trim(),
                Columns: source.FeatureInputs is null ? source.Features : null), plan);
            var manifest = imported.Manifest;
            manifest.ScoreMeaning = source.ScoreMeaning;
            manifest.PrimaryScoreIndex = source.PrimaryScoreIndex;
            manifest.Metrics = new Dictionary<string, double>
            {
                ["converted_nodes"] = report.Converted.Count(),
                ["skipped_nodes"] = report.Skipped.Count(),
                ["weight_bytes"] = report.WeightBytesAfter,
                ["source_weight_bytes"] = report.WeightBytesBefore,
            };
            if (source.Metrics?.GetValueOrDefault("parameters") is > 0 and var parameters) manifest.Metrics["parameters"] = parameters;
            if (source.Metrics?.GetValueOrDefault("split_at_ms") is > 0 and var split) manifest.Metrics["split_at_ms"] = split;
            manifest.GeneratedBy = $"streaminference model quantize {source.Name}@{source.Version} {request.Options.Flags()}";
            File.WriteAllText(Path.Combine(imported.Directory, "manifest.json"), manifest.ToJson() + "\n");

            HeldOutRows? heldOut = null;
            double sourceAuc = double.NaN, auc = double.NaN, maxDiff = double.NaN, meanDiff = double.NaN;
            if (data is not null)
            {
                try
                {
                    heldOut = HeldOutRows.Select(data, source, testFraction);
                    stage?.Report($"scoring {data.Count:N0} training rows for the reference profile and the {heldOut.Rows.Length:N0} held-out rows ({heldOut.Rule}) with both models");
                    var (_, all) = ProfileBuilder.BuildAndSave(imported.Directory, data, plan);
                    var broken = all.Count(v => !double.IsFinite(v));
                    if (broken > 0)
                        throw new InvalidDataException($"{name}@{version} scored {broken:N0} of {all.Length:N0} training rows as NaN or infinity (float16 overflows beyond ±65504 on " +
                                                       "large activations): quantize fewer layers (--min-dimension) or use int8.");
                    var scores = heldOut.Of(all);
                    var reference = heldOut.Score(sourceDir, data, plan);
                    (sourceAuc, auc) = (heldOut.Auc(reference), heldOut.Auc(scores));
                    var diffs = scores.Zip(reference, (a, b) => Math.Abs(a - b)).ToArray();
                    (maxDiff, meanDiff) = (diffs.Max(), diffs.Average());
                    manifest.Metrics["test_auc"] = Math.Round(auc, 5);
                    manifest.Metrics["source_test_auc_same_rows"] = Math.Round(sourceAuc, 5);
                    manifest.Metrics["test_auc_rows"] = heldOut.Rows.Length;
                    manifest.Metrics["max_abs_score_diff"] = Math.Round(maxDiff, 7);
                    manifest.Metrics["mean_abs_score_diff"] = Math.Round(meanDiff, 7);
                    File.WriteAllText(Path.Combine(imported.Directory, "manifest.json"), manifest.ToJson() + "\n");
                }
                catch
                {
                    // A version is complete or absent.
                    Directory.Delete(imported.Directory, recursive: true);
                    throw;
                }
            }
            return new QuantizeResult(imported.Directory, manifest, report, new FileInfo(sourceModel).Length, new FileInfo(Path.Combine(imported.Directory, "model.onnx")).Length,
                heldOut, sourceAuc, auc, maxDiff, meanDiff);
        }
        finally
        {
            File.Delete(quantized);
        }
    }

    private static string Capitalized(string text) => text.Length == 0 ? text : char.ToUpper(text[0], CultureInfo.InvariantCulture) + text[1..];
}
