using System.Text.Json;
using System.Text.Json.Serialization;

namespace StreamInference.Core.Drift;

/// <summary>
/// The training distributions of a model's inputs and of its score, saved beside the model as
/// <c>reference-profile.json</c> by <c>streaminference profile</c>; the drift monitor compares live
/// traffic with it. Continuous values are summarized by quantile bin edges (the bins live values are
/// counted into) and the training share per bin; categorical values by their frequencies.
/// </summary>
public sealed class ReferenceProfile
{
    public const string FileName = "reference-profile.json";

    [JsonPropertyName("featureSet")] public string FeatureSet { get; set; } = "";
    [JsonPropertyName("featureSetVersion")] public int FeatureSetVersion { get; set; }
    [JsonPropertyName("model")] public string Model { get; set; } = "";
    [JsonPropertyName("modelVersion")] public string ModelVersion { get; set; } = "";
    [JsonPropertyName("rows")] public long Rows { get; set; }
    [JsonPropertyName("fromMs")] public long FromMs { get; set; }
    [JsonPropertyName("toMs")] public long ToMs { get; set; }
    [JsonPropertyName("features")] public List<DistributionProfile> Features { get; set; } = [];
    [JsonPropertyName("prediction")] public DistributionProfile Prediction { get; set; } = new();

    public string ToJson() => JsonSerializer.Serialize(this, ProfileJson.Default.ReferenceProfile);

    public static ReferenceProfile Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), ProfileJson.Default.ReferenceProfile)
                   ?? throw new InvalidDataException($"{path}: empty reference profile.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a reference profile: {e.Message}", e);
        }
    }
}

public sealed class DistributionProfile
{
    [JsonPropertyName("name")] public string Name { get; set; } = "";
    /// <summary>"continuous" or "categorical".</summary>
    [JsonPropertyName("kind")] public string Kind { get; set; } = "continuous";
    [JsonPropertyName("count")] public long Count { get; set; }
    /// <summary>Share of rows where the feature fell back to its default (missing, unknown or stale input).</summary>
    [JsonPropertyName("missingRate")] public double MissingRate { get; set; }
    [JsonPropertyName("mean")] public double Mean { get; set; }
    [JsonPropertyName("std")] public double Std { get; set; }
    [JsonPropertyName("min")] public double Min { get; set; }
    [JsonPropertyName("max")] public double Max { get; set; }
    /// <summary>Inner bin edges (continuous): bin i holds values in [edge[i-1], edge[i]); the first and last bins are open.</summary>
    [JsonPropertyName("binEdges")] public double[] BinEdges { get; set; } = [];
    /// <summary>Training share per bin (continuous: edges + 1 bins; categorical: one per category).</summary>
    [JsonPropertyName("binShares")] public double[] BinShares { get; set; } = [];
    /// <summary>Category values (categorical), in the order of <see cref="BinShares"/>.</summary>
    [JsonPropertyName("categories")] public double[] Categories { get; set; } = [];
    /// <summary>Deciles 0.1 .. 0.9 (informational).</summary>
    [JsonPropertyName("deciles")] public double[] Deciles { get; set; } = [];
    /// <summary>
    /// How the continuous bins were cut: "quantile" (training deciles), or "value" where quantile edges collapse
    /// on point masses (counts that are mostly 0): then every frequent value has its own bin, so a shift of the
    /// mass between them stays visible.
    /// </summary>
    [JsonPropertyName("binning")] public string Binning { get; set; } = "quantile";
    /// <summary>
    /// A function of the event's clock: "hourOfDay" (judged against the shares of the hours the window's event times
    /// cover) or "dayOfWeek" (judged over windows spanning a week); empty for every other feature.
    /// </summary>
    [JsonPropertyName("clock")] public string Clock { get; set; } = "";
    /// <summary>Training rows per UTC hour of the event time (24 entries; empty in profiles written before conditioning).</summary>
    [JsonPropertyName("hourCounts")] public long[] HourCounts { get; set; } = [];
    /// <summary>Training share per bin within each UTC hour of the event time: 24 rows of <see cref="BinShares"/>'s length.</summary>
    [JsonPropertyName("hourBinShares")] public double[][] HourBinShares { get; set; } = [];
}

[JsonSourceGenerationOptions(WriteIndented = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(ReferenceProfile))]
internal sealed partial class ProfileJson : JsonSerializerContext;
