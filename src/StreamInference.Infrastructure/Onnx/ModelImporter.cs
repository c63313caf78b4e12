using StreamInference.Core.Features;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>What <c>model import</c> is told; the optional fields settle what the graph leaves ambiguous.</summary>
public sealed record ModelImportRequest(string ModelFile, string Repository, string Name, string? Version = null,
    string? Input = null, string? ScoreOutput = null, string? LabelOutput = null, string? PositiveClass = null, string? Description = null);

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
        var info = OnnxModelInspection.Inspect(request.ModelFile);

        var floatInputs = info.Inputs.Where(p => p.Type.StartsWith("float[", StringComparison.Ordinal) && p.Type.Count(c => c == ',') == 1).ToList();
        var input = request.Input ?? (info.Inputs.Count == 1 ? info.Inputs[0].Name
            : throw new InvalidDataException($"{request.ModelFile} has inputs {string.Join(", ", info.Inputs.Select(p => p.Name))}; the scorer feeds one float [N, F] input: " +
                                             "re-export with only the feature matrix (pass --input to name it if that is what you did)."));
        if (info.Inputs.All(p => p.Name != input))
            throw new ArgumentException($"--input '{input}' is not an input of {request.ModelFile} (inputs: {string.Join(", ", info.Inputs.Select(p => p.Name))}).");
        if (floatInputs.All(p => p.Name != input))
            throw new InvalidDataException($"{request.ModelFile}: input '{input}' is {info.Inputs.First(p => p.Name == input).Type}; the scorer feeds float [N, {plan.FeatureCount}].");

        var candidates = info.Outputs.Where(p => p.Type.StartsWith("float[", StringComparison.Ordinal) || p.Type.StartsWith("seq(", StringComparison.Ordinal)).ToList();
        var scoreOutput = request.ScoreOutput ?? (candidates.Count == 1 ? candidates[0].Name
            : candidates.Count == 0 ? throw new InvalidDataException($"{request.ModelFile} has no float tensor or ZipMap output to read scores from.")
            : throw new InvalidDataException($"{request.ModelFile} has {candidates.Count} outputs that could be the score ({string.Join(", ", candidates.Select(p => p.Name))}): " +
                                             "say which with --score-output (for a classifier, its probabilities)."));
        if (info.Outputs.All(p => p.Name != scoreOutput))
            throw new ArgumentException($"--score-output '{scoreOutput}' is not an output of {request.ModelFile} (outputs: {string.Join(", ", info.Outputs.Select(p => p.Name))}).");
        var labelOutput = request.LabelOutput ?? info.LabelOutput;
        if (labelOutput is not null && info.Outputs.All(p => p.Name != labelOutput))
            throw new ArgumentException($"--label-output '{labelOutput}' is not an output of {request.ModelFile}.");
        if (request.PositiveClass is null && info.Kind == "binary classifier" && info.ClassLabels is { } classes && info.ScoreColumn is null)
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
            Features = plan.Features.Select(f => f.Name).ToList(),
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
            var (rows, min, mean, max) = ValidationScoring(directory, plan);
            return new ModelImportResult(directory, manifest, info.Kind, rows, min, mean, max);
        }
        catch
        {
            Directory.Delete(directory, recursive: true);
            throw;
        }
    }

    /// <summary>Loads the version as serve does and scores generated rows (zeros, ones, and values around them): every score must be finite.</summary>
    private static (int Rows, double Min, double Mean, double Max) ValidationScoring(string directory, FeaturePlan plan)
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
        scorer.Score(batch);
        double min = double.MaxValue, max = double.MinValue, sum = 0;
        for (var k = 0; k < rows; k++)
        {
            var s = batch.ScoreRow(k)[scorer.PrimaryScoreIndex];
            if (!double.IsFinite(s)) throw new InvalidDataException($"{directory}: validation row {k} scored {s}; the model does not produce finite scores for feature vectors of this feature set.");
            (min, max, sum) = (Math.Min(min, s), Math.Max(max, s), sum + s);
        }
        return (rows, min, sum / rows, max);
    }

    /// <summary>One above the highest numeric version of the model, or 1.</summary>
    public static string NextVersion(string modelDirectory) =>
        ((Directory.Exists(modelDirectory)
            ? Directory.GetDirectories(modelDirectory).Select(d => long.TryParse(Path.GetFileName(d), out var v) ? v : 0).DefaultIfEmpty(0).Max()
            : 0) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
