using Parquet;
using Parquet.Schema;
using StreamInference.Batch.Features;
using StreamInference.Batch.History;
using StreamInference.Core.Features;

namespace StreamInference.Batch.Training;

/// <summary>
/// A training set: per event its id, time, entity, label, which features were defaulted and whether
/// it was late, then one float column per feature in the model's input order. Metadata records the
/// feature set name and version so training refuses a set built from other definitions.
/// </summary>
public sealed class TrainingSet
{
    public const string IdColumn = "event_id";
    public const string TimeColumn = "event_time_ms";
    public const string EntityColumn = "entity_key";
    public const string LabelColumn = "label";
    public const string DefaultedColumn = "_defaulted_mask";
    public const string LateColumn = "_late";

    public required string FeatureSet { get; init; }
    public required int FeatureSetVersion { get; init; }
    public required string[] FeatureNames { get; init; }
    public required string[] Ids { get; init; }
    public required long[] TimesMs { get; init; }
    public required string[] Entities { get; init; }
    /// <summary>0/1, NaN when unknown.</summary>
    public required double[] Labels { get; init; }
    public required long[] DefaultedMask { get; init; }
    /// <summary>Row-major <c>Count × FeatureNames.Length</c>.</summary>
    public required float[] Features { get; init; }
    public int Count => Ids.Length;
    public int Width => FeatureNames.Length;

    public ReadOnlySpan<float> Row(int i) => Features.AsSpan(i * Width, Width);

    /// <summary>Writes the rows of <paramref name="history"/> from <paramref name="fromMs"/> on (earlier ones are the warm-up).</summary>
    public static async Task<int> WriteAsync(string path, EventHistory history, FeatureRows rows, long fromMs = long.MinValue, CancellationToken ct = default)
    {
        var plan = history.Plan;
        var keep = Enumerable.Range(0, history.Count).Where(i => history.TimeMs(i) >= fromMs).ToArray();
        var n = keep.Length;
        var fields = new List<DataField>
        {
            new DataField<string>(IdColumn), new DataField<long>(TimeColumn), new DataField<string>(EntityColumn),
            new DataField<double?>(LabelColumn), new DataField<long>(DefaultedColumn), new DataField<bool>(LateColumn),
        };
        fields.AddRange(plan.Features.Select(f => new DataField<float>(f.Name)));
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await using var stream = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(fields), stream, cancellationToken: ct).ConfigureAwait(false);
        writer.CustomMetadata = new Dictionary<string, string>
        {
            ["streaminference.feature_set"] = plan.Name,
            ["streaminference.feature_set_version"] = plan.Version.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        const int rowGroup = 200_000;
        for (var start = 0; start < n; start += rowGroup)
        {
            var m = Math.Min(rowGroup, n - start);
            using var rg = writer.CreateRowGroup();
            var slice = keep.AsSpan(start, m).ToArray();
            await rg.WriteAsync(fields[0], slice.Select(history.Id).ToArray()).ConfigureAwait(false);
            await rg.WriteAsync<long>(fields[1], slice.Select(history.TimeMs).ToArray()).ConfigureAwait(false);
            await rg.WriteAsync(fields[2], slice.Select(history.EntityKey).ToArray()).ConfigureAwait(false);
            await rg.WriteAsync<double>(fields[3], slice.Select(i => double.IsFinite(history.Label(i)) ? history.Label(i) : (double?)null).ToArray()).ConfigureAwait(false);
            await rg.WriteAsync<long>(fields[4], slice.Select(i => rows.DefaultedMask[i]).ToArray()).ConfigureAwait(false);
            await rg.WriteAsync<bool>(fields[5], slice.Select(i => rows.Late[i]).ToArray()).ConfigureAwait(false);
            var column = new float[m];
            for (var f = 0; f < plan.FeatureCount; f++)
            {
                for (var i = 0; i < m; i++) column[i] = rows.Values[slice[i] * plan.FeatureCount + f];
                await rg.WriteAsync<float>(fields[6 + f], column).ConfigureAwait(false);
            }
        }
        return n;
    }

    public static async Task<TrainingSet> ReadAsync(string path, CancellationToken ct = default)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Training set '{path}' does not exist (run 'streaminference backfill' first).", path);
        await using var stream = File.OpenRead(path);
        await using var reader = await ParquetReader.CreateAsync(stream, cancellationToken: ct).ConfigureAwait(false);
        var meta = reader.CustomMetadata;
        if (!meta.TryGetValue("streaminference.feature_set", out var name) || !meta.TryGetValue("streaminference.feature_set_version", out var version))
            throw new InvalidDataException($"{path}: not a training set written by 'streaminference backfill' (no feature-set metadata).");
        var all = reader.Schema.GetDataFields();
        var fixedNames = new[] { IdColumn, TimeColumn, EntityColumn, LabelColumn, DefaultedColumn, LateColumn };
        var featureFields = all.Where(f => !fixedNames.Contains(f.Name)).ToArray();
        DataField Field(string n) => all.FirstOrDefault(f => f.Name == n) ?? throw new InvalidDataException($"{path}: column '{n}' is missing.");
        var ids = new List<string>(); var times = new List<long>(); var entities = new List<string>();
        var labels = new List<double>(); var masks = new List<long>(); var features = new List<float>();
        for (var g = 0; g < reader.RowGroupCount; g++)
        {
            using var rg = reader.OpenRowGroupReader(g);
            var n = (int)rg.RowCount;
            ids.AddRange((await ParquetHistory.ReadTextAsync(rg, Field(IdColumn), n, ct).ConfigureAwait(false))!);
            times.AddRange((await ParquetHistory.ReadNumericAsync(rg, Field(TimeColumn), n, ct).ConfigureAwait(false)).Select(v => (long)v));
            entities.AddRange((await ParquetHistory.ReadTextAsync(rg, Field(EntityColumn), n, ct).ConfigureAwait(false))!);
            labels.AddRange(await ParquetHistory.ReadNumericAsync(rg, Field(LabelColumn), n, ct).ConfigureAwait(false));
            masks.AddRange((await ParquetHistory.ReadNumericAsync(rg, Field(DefaultedColumn), n, ct).ConfigureAwait(false)).Select(v => (long)v));
            var columns = new double[featureFields.Length][];
            for (var f = 0; f < featureFields.Length; f++)
                columns[f] = await ParquetHistory.ReadNumericAsync(rg, featureFields[f], n, ct).ConfigureAwait(false);
            for (var i = 0; i < n; i++)
                for (var f = 0; f < featureFields.Length; f++) features.Add((float)columns[f][i]);
        }
        return new TrainingSet
        {
            FeatureSet = name,
            FeatureSetVersion = int.Parse(version, System.Globalization.CultureInfo.InvariantCulture),
            FeatureNames = featureFields.Select(f => f.Name).ToArray(),
            Ids = [.. ids], TimesMs = [.. times], Entities = [.. entities], Labels = [.. labels], DefaultedMask = [.. masks], Features = [.. features],
        };
    }
}
