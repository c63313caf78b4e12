using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>models/&lt;name&gt;/&lt;version&gt;/manifest.json: what the model expects and what its outputs mean.</summary>
public sealed class ModelManifest
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    [JsonPropertyName("version")] public string Version { get; set; } = "";
    [JsonPropertyName("description")] public string? Description { get; set; }
    /// <summary>Feature set (name and version) the model was trained on; the processor refuses any other.</summary>
    [JsonPropertyName("featureSet")] public string FeatureSet { get; set; } = "";
    [JsonPropertyName("featureSetVersion")] public int FeatureSetVersion { get; set; }
    /// <summary>Name of the single float input [N, F] (unless <see cref="FeatureInputs"/> is set).</summary>
    [JsonPropertyName("input")] public string Input { get; set; } = "features";
    /// <summary>
    /// Models with one input per feature (as onnxmltools makes them with one initial type per column): the ONNX
    /// input fed each feature, in <see cref="Features"/> order, each float [N, 1]. Replaces <see cref="Input"/>.
    /// </summary>
    [JsonPropertyName("featureInputs")] public List<string>? FeatureInputs { get; set; }
    /// <summary>
    /// Inputs that are not features and do not change the score (ML.NET's export keeps its Label column as an
    /// input): fed this constant. <c>model import</c> checks that the score does not depend on them.
    /// </summary>
    [JsonPropertyName("constantInputs")] public Dictionary<string, double>? ConstantInputs { get; set; }
    /// <summary>Feature names in input column order.</summary>
    [JsonPropertyName("features")] public List<string> Features { get; set; } = [];
    /// <summary>Output holding the scores: float [N], [N,1], [N,K], or a ZipMap sequence of maps.</summary>
    [JsonPropertyName("scoreOutput")] public string? ScoreOutput { get; set; }
    /// <summary>Output holding class labels (int64, string or bool [N] or [N,1]), for classifiers.</summary>
    [JsonPropertyName("labelOutput")] public string? LabelOutput { get; set; }
    /// <summary>
    /// Which score column is the primary <c>score</c>. Default: the positive class of a binary classifier (see
    /// <see cref="PositiveClass"/>), else the last column.
    /// </summary>
    [JsonPropertyName("primaryScoreIndex")] public int? PrimaryScoreIndex { get; set; }
    /// <summary>
    /// Binary classifiers: the label of the positive class, whose probability is the published <c>score</c>. Default:
    /// the class labelled 1 or true when the model's class labels are known.
    /// </summary>
    [JsonPropertyName("positiveClass")] public string? PositiveClass { get; set; }
    /// <summary>What the score means, for people: e.g. "probability of fraud".</summary>
    [JsonPropertyName("scoreMeaning")] public string? ScoreMeaning { get; set; }
    [JsonPropertyName("metrics")] public Dictionary<string, double>? Metrics { get; set; }
    [JsonPropertyName("generatedBy")] public string? GeneratedBy { get; set; }

    public static ModelManifest Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), ManifestJson.Default.ModelManifest)
                   ?? throw new InvalidDataException($"{path} is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a valid model manifest: {e.Message}", e);
        }
    }

    public string ToJson() => JsonSerializer.Serialize(this, typeof(ModelManifest), WriteOptions);

    // Text as written ("+", "<", non-ASCII): a manifest is read by people, and never embedded in HTML.
    private static readonly JsonSerializerOptions WriteOptions = new(ManifestJson.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        TypeInfoResolver = ManifestJson.Default,
    };
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ModelManifest))]
public sealed partial class ManifestJson : JsonSerializerContext;

/// <summary>Resolves models/&lt;name&gt;/&lt;version&gt; in a model repository directory.</summary>
public static class ModelRepository
{
    /// <summary>
    /// Copies a model version directory into <paramref name="repository"/> as <paramref name="name"/> (its own name when
    /// null), the manifest renamed to match. A copy under another name leaves the reference profile behind: its drift
    /// would be measured against the original's training data under a name that is not the original's.
    /// </summary>
    /// <returns>The new version directory.</returns>
    public static string CopyVersion(string from, string repository, string? name = null)
    {
        var source = ModelManifest.Load(Path.Combine(from, "manifest.json"));
        name ??= source.Name;
        var dir = Path.Combine(repository, name, Path.GetFileName(Path.TrimEndingDirectorySeparator(from)));
        Directory.CreateDirectory(dir);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
        if (name == source.Name) return dir;
        source.Name = name;
        File.WriteAllText(Path.Combine(dir, "manifest.json"), source.ToJson());
        File.Delete(Path.Combine(dir, "reference-profile.json"));
        return dir;
    }

    /// <summary>
    /// The directory of <paramref name="name"/> at <paramref name="version"/>; "latest" picks the highest
    /// version (numeric when the names are numbers).
    /// </summary>
    public static string Resolve(string repository, string name, string version)
    {
        var modelDir = Path.Combine(repository, name);
        if (!Directory.Exists(modelDir))
            throw new FileNotFoundException($"Model '{name}' not found: directory '{modelDir}' does not exist (Model:Repository = '{repository}').");
        if (version != "latest")
        {
            var dir = Path.Combine(modelDir, version);
            if (!Directory.Exists(dir))
                throw new FileNotFoundException($"Model '{name}' has no version '{version}' (looked in '{dir}').");
            CheckIdentity(dir, name, version);
            return dir;
        }
        var versions = Directory.GetDirectories(modelDir)
            .Where(d => File.Exists(Path.Combine(d, "model.onnx")))
            .OrderBy(d => long.TryParse(Path.GetFileName(d), out var v) ? v : long.MinValue)
            .ThenBy(d => Path.GetFileName(d), StringComparer.Ordinal)
            .ToList();
        if (versions.Count == 0)
            throw new FileNotFoundException($"Model '{name}' has no version with a model.onnx under '{modelDir}'.");
        CheckIdentity(versions[^1], name, Path.GetFileName(versions[^1]));
        return versions[^1];
    }

    /// <summary>
    /// The repository path is the model's identity as operators name it (Model:Name, Model:Version); the manifest's
    /// is what predictions are labelled with. They must agree, or predictions would carry another model's name.
    /// </summary>
    public static void CheckIdentity(string directory, string name, string version)
    {
        var path = Path.Combine(directory, "manifest.json");
        if (!File.Exists(path)) return;   // the scorer reports the missing manifest
        var manifest = ModelManifest.Load(path);
        if (manifest.Name != name || manifest.Version != version)
            throw new InvalidDataException($"{Shown(path)} says {manifest.Name}@{manifest.Version}, but it lies at {name}@{version} in the repository: " +
                                           "set its name and version to the directory's (or move it), so predictions are labelled with the model that made them.");
    }

    /// <summary>A path under the working directory as a relative one (how the operator typed it), others as they are.</summary>
    private static string Shown(string path)
    {
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, path);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? path : relative;
    }
}
