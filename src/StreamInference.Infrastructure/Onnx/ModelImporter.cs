using StreamInference.Core.Features;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>What <c>model import</c> is told; the optional fields settle what the graph leaves ambiguous.</summary>
public sealed record ModelImportRequest(string ModelFile, string Repository, string Name, string? Version = null,
    string? Input = null, string? ScoreOutput = null, string? LabelOutput = null, string? PositiveClass = null, string? Description = null,
    IReadOnlyList<string>? Columns = null);

/// <summary>The imported version: where it went, its manifest, and the validation scoring's figures.</summary>
public sealed record ModelImportResult(string Directory, ModelManifest Manifest, string Kind, int ValidationRows, double ScoreMin, double ScoreMean, double ScoreMax);

/// <summary>
/// Brings a model trained elsewhere into a repository: <c>models/&lt;name&gt;/&lt;version&gt;/</c> with the ONNX file
/// and a manifest inferred from the graph and the feature set. What the graph leaves open (two candidate score
/// outputs, classes that are not 0/1) is refused with the option that settles it; the result is loaded and scored
/// as <c>serve</c> would before the import counts as done, and removed when that fails.
/// </summary>
public static class ModelImporter
{
    public static ModelImportResult Import(ModelImportRequest request, FeaturePlan plan)
    {
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.IndexOfAny(['/', '\\', '@']) >= 0 || request.Name is "." or "..")
            throw new ArgumentException($"--name '{request.Name}' must be a plain directory name (no '/', '\\' or '@').");
        var featureNames = plan.Features.Select(f => f.Name).ToList();
        var info = OnnxModelInspection.Inspect(request.ModelFile, featureNames);
        var inputs = string.Join(", ", info.Inputs.Select(p => $"{p.Name} {p.Type}"));

        // The features: one float [N, F] matrix, or one float [N, 1] input per feature named after it.
        string input;
        List<string>? featureInputs = null;
        if (request.Input is { } named)
        {
            var port = info.Inputs.FirstOrDefault(p => p.Name == named)
                       ?? throw new ArgumentException($"--input '{named}' is not an input of {request.ModelFile} (inputs: {inputs}).");
            if (!port.Type.StartsWith("float[", StringComparison.Ordinal) || port.Type.Count(c => c == ',') != 1)
                throw new InvalidDataException($"{request.ModelFile}: input '{named}' is {port.Type}; the scorer feeds the features as float [N, {plan.FeatureCount}].");
            input = named;
        }
        else if (info.Layout.Matrix is { } matrix) input = matrix;
        else if (info.Layout.PerFeature.Count > 0)
        {
            // Each input named after a feature is fed that feature; the model may read any subset of the feature set.
            featureInputs = [.. info.Layout.PerFeature];
            input = featureInputs[0];
        }
        else
            throw new InvalidDataException($"{request.ModelFile} has no float [N, {plan.FeatureCount}] input and no float [N, 1] input per feature (inputs: {inputs}): " +
                                           "say which input holds the features with --input.");
        if (info.Layout.Batch > 1 && request.Input is null)
            throw new InvalidDataException($"{request.ModelFile}: the features input has a fixed batch dimension of {info.Layout.Batch}; the scorer runs micro-batches of any size: " +
                                           "re-export with a dynamic first dimension (N, e.g. None in skl2onnx / onnxmltools initial types).");
        // The matrix's columns: the whole feature set in its order, or the features --columns names (a model trained on
        // a subset, or in another order); the width must say which.
        var columns = featureInputs ?? MatrixColumns(request, plan, info.Inputs.First(p => p.Name == input).Type, input);
        var fed = featureInputs ?? [input];
        var extras = info.Inputs.Select(p => p.Name).Where(n => !fed.Contains(n)).ToList();

        var scoreOutput = request.ScoreOutput ?? info.ScoreCandidates.Count switch
        {
            0 => throw new InvalidDataException($"{request.ModelFile} has no float tensor or ZipMap output to read scores from."),
            _ => OnnxModelInspection.PreferredScore(info.ScoreCandidates)
                 ?? throw new InvalidDataException($"{request.ModelFile} has {info.ScoreCandidates.Count} outputs that could be the score ({string.Join(", ", info.ScoreCandidates)}): " +
                                                   "say which with --score-output (for a classifier, its probabilities)."),
        };
        if (info.Outputs.All(p => p.Name != scoreOutput))
            throw new ArgumentException($"--score-output '{scoreOutput}' is not an output of {request.ModelFile} (outputs: {string.Join(", ", info.Outputs.Select(p => p.Name))}).");
        var labelOutput = request.LabelOutput ?? info.LabelOutput;
        if (labelOutput is not null && info.Outputs.All(p => p.Name != labelOutput))
            throw new ArgumentException($"--label-output '{labelOutput}' is not an output of {request.ModelFile}.");
        if (request.PositiveClass is null && (request.ScoreOutput is null || request.ScoreOutput == info.ScoreOutput)
            && info.ClassLabels is { Count: 2 } classes && info.LabelOutput is not null && info.ScoreColumn is null)
            throw new InvalidDataException($"{request.ModelFile} is a binary classifier with classes {string.Join(" and ", classes)}: " +
                                           "say which is positive (its probability becomes the score) with --positive-class.");

        var repository = Path.GetFullPath(request.Repository);
        var version = request.Version ?? NextVersion(Path.Combine(repository, request.Name));
        var directory = Path.Combine(repository, request.Name, version);
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new InvalidOperationException($"'{directory}' already exists: choose another --version (versions are immutable once served).");
        var manifest = new ModelManifest
        {
            Name = request.Name,
            Version = version,
            Description = request.Description ?? $"Imported from {Path.GetFileName(request.ModelFile)} ({info.Kind}).",
            FeatureSet = plan.Name,
            FeatureSetVersion = plan.Version,
            Input = input,
            FeatureInputs = featureInputs,
            ConstantInputs = extras.Count > 0 ? extras.ToDictionary(e => e, _ => 0.0) : null,
            Features = [.. columns],
            ScoreOutput = scoreOutput,
            LabelOutput = labelOutput,
            PositiveClass = request.PositiveClass,
            GeneratedBy = "streaminference model import",
        };
        Directory.CreateDirectory(directory);
        try
        {
            File.Copy(request.ModelFile, Path.Combine(directory, "model.onnx"));
            File.WriteAllText(Path.Combine(directory, "manifest.json"), manifest.ToJson() + "\n");
            ModelRepository.CheckIdentity(directory, request.Name, version);
            var scores = ValidationScoring(directory, plan);
            if (extras.Count > 0) CheckConstantInputs(directory, manifest, extras, scores, plan, request.ModelFile);
            return new ModelImportResult(directory, manifest, info.Kind, scores.Length, scores.Min(), scores.Average(), scores.Max());
        }
        catch
        {
            Directory.Delete(directory, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Inputs that are not features (ML.NET's export keeps Label) are fed 0 when served; that is only right when the
    /// score does not depend on them. The validation rows are scored again with every such input at 1: any difference
    /// refuses the model.
    /// </summary>
    private static void CheckConstantInputs(string directory, ModelManifest manifest, List<string> extras, double[] atZero, FeaturePlan plan, string modelFile)
    {
        var path = Path.Combine(directory, "manifest.json");
        manifest.ConstantInputs = extras.ToDictionary(e => e, _ => 1.0);
        File.WriteAllText(path, manifest.ToJson() + "\n");
        var atOne = ValidationScoring(directory, plan);
        manifest.ConstantInputs = extras.ToDictionary(e => e, _ => 0.0);
        File.WriteAllText(path, manifest.ToJson() + "\n");
        var diff = atZero.Zip(atOne, (a, b) => Math.Abs(a - b)).Max();
        if (diff > 0)
            throw new InvalidDataException(FormattableString.Invariant(
                $"{modelFile}: input(s) {string.Join(", ", extras)} are not features, and the score depends on them (validation scores move by up to {diff:G3} between 0 and 1): ") +
                "the processor has only the features to feed; re-export the model without them.");
    }

    /// <summary>Loads the version as serve does and scores generated rows (zeros, ones, and values around them): every score must be finite.</summary>
    private static double[] ValidationScoring(string directory, FeaturePlan plan)
    {
        using var scorer = new OnnxScorer(directory, plan);
        const int rows = 64;
        var batch = new Core.Pipeline.EventBatch(plan, rows, scorer.OutputWidth);
        var random = new Random(1);
        for (var k = 0; k < rows; k++)
        {
            batch.Rows[k] = k;
            var row = batch.FeatureRow(k);
            for (var f = 0; f < row.Length; f++) row[f] = k == 0 ? 0 : k == 1 ? 1 : (float)(random.NextDouble() * 4 - 1);
        }
        batch.OkCount = rows;
        try
        {
            scorer.Score(batch);
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            throw new InvalidDataException($"{directory}: ONNX Runtime could not score {rows} validation rows in one batch: {e.Message}", e);
        }
        var scores = new double[rows];
        for (var k = 0; k < rows; k++)
        {
            var s = scores[k] = batch.ScoreRow(k)[scorer.PrimaryScoreIndex];
            if (!double.IsFinite(s)) throw new InvalidDataException($"{directory}: validation row {k} scored {s}; the model does not produce finite scores for feature vectors of this feature set.");
        }
        CheckLabelsAgree(directory, scorer, batch, scores);
        return scores;
    }

    /// <summary>
    /// A binary classifier's published label must agree with its published score: the positive class where the score is
    /// above 0.5. With two probability columns that is exact (the label is the likelier class), and any disagreement
    /// means the score is another class's probability. With one column the label may come from a raw score whose
    /// threshold the calibrated probability only approximates (ML.NET's FastTree), so only a score that contradicts its
    /// label on most rows (an inverted or unrelated output) is refused.
    /// </summary>
    private static void CheckLabelsAgree(string directory, OnnxScorer scorer, Core.Pipeline.EventBatch batch, double[] scores)
    {
        if (scorer.PositiveLabel is not { } positive) return;
        var decisive = Enumerable.Range(0, scores.Length).Where(k => Math.Abs(scores[k] - 0.5) > 1e-6 && batch.Labels[k] is not null).ToList();
        var disagree = decisive.Where(k => string.Equals(batch.Labels[k], positive, StringComparison.OrdinalIgnoreCase) != scores[k] > 0.5).ToList();
        if (disagree.Count == 0 || (scorer.OutputWidth == 1 && disagree.Count * 2 <= decisive.Count)) return;
        throw new InvalidDataException(FormattableString.Invariant(
            $"{directory}: the model's label disagrees with its score on {disagree.Count} of {decisive.Count} validation rows (row {disagree[0]}: label {batch.Labels[disagree[0]]}, score {scores[disagree[0]]:0.####} for class {positive}): ") +
            "the score is not the positive class's probability; check --score-output and --positive-class.");
    }

    private static List<string> MatrixColumns(ModelImportRequest request, FeaturePlan plan, string type, string input)
    {
        var dims = type[(type.IndexOf('[', StringComparison.Ordinal) + 1)..^1].Split(',');
        int? width = dims.Length == 2 && int.TryParse(dims[1], System.Globalization.CultureInfo.InvariantCulture, out var w) ? w : null;
        if (request.Columns is { } named)
        {
            var unknown = named.Where(c => plan.Features.All(f => f.Name != c)).ToList();
            if (unknown.Count > 0)
                throw new ArgumentException($"--columns: {string.Join(", ", unknown)} not in feature set '{plan.Name}' v{plan.Version} ({string.Join(", ", plan.Features.Select(f => f.Name))}).");
            if (width is { } k && k != named.Count)
                throw new ArgumentException($"--columns names {named.Count} features; input '{input}' of {request.ModelFile} has {k} columns.");
            return [.. named];
        }
        if (width is { } cols && cols != plan.FeatureCount)
            throw new InvalidDataException($"{request.ModelFile}: input '{input}' has {cols} columns and feature set '{plan.Name}' v{plan.Version} has {plan.FeatureCount}: " +
                                           "say which features the model reads, in its column order, with --columns (comma-separated names).");
        return [.. plan.Features.Select(f => f.Name)];
    }

    /// <summary>One above the highest numeric version of the model, or 1.</summary>
    public static string NextVersion(string modelDirectory) =>
        ((Directory.Exists(modelDirectory)
            ? Directory.GetDirectories(modelDirectory).Select(d => long.TryParse(Path.GetFileName(d), out var v) ? v : 0).DefaultIfEmpty(0).Max()
            : 0) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
