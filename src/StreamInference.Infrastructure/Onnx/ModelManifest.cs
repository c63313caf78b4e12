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
    /// <summary>Name of the single float input [N, F].</summary>
    [JsonPropertyName("input")] public string Input { get; set; } = "features";
    /// <summary>Feature names in input column order.</summary>
    [JsonPropertyName("features")] public List<string> Features { get; set; } = [];
    /// <summary>Output holding the scores: float [N], [N,1], [N,K], or a ZipMap sequence of maps.</summary>
    [JsonPropertyName("scoreOutput")] public string? ScoreOutput { get; set; }
    /// <summary>Output holding class labels (int64 or string [N]), for classifiers.</summary>
    [JsonPropertyName("labelOutput")] public string? LabelOutput { get; set; }
    /// <summary>Which score column is the primary <c>score</c> (e.g. the positive class). Default: last.</summary>
    [JsonPropertyName("primaryScoreIndex")] public int? PrimaryScoreIndex { get; set; }
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

    public string ToJson() => JsonSerializer.Serialize(this, ManifestJson.Default.ModelManifest);
}

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ModelManifest))]
public sealed partial class ManifestJson : JsonSerializerContext;

/// <summary>Resolves models/&lt;name&gt;/&lt;version&gt; in a model repository directory.</summary>
public static class ModelRepository
{
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
            return dir;
        }
        var versions = Directory.GetDirectories(modelDir)
            .Where(d => File.Exists(Path.Combine(d, "model.onnx")))
            .OrderBy(d => long.TryParse(Path.GetFileName(d), out var v) ? v : long.MinValue)
            .ThenBy(d => Path.GetFileName(d), StringComparer.Ordinal)
            .ToList();
        if (versions.Count == 0)
            throw new FileNotFoundException($"Model '{name}' has no version with a model.onnx under '{modelDir}'.");
        return versions[^1];
    }
}
