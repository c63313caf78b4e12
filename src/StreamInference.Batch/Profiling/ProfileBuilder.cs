using StreamInference.Batch.Training;
using StreamInference.Core.Drift;
using StreamInference.Core.Features;

namespace StreamInference.Batch.Profiling;

/// <summary>Builds a <see cref="ReferenceProfile"/> from a training set and the model's scores on it.</summary>
public static class ProfileBuilder
{
    public const int Bins = 10;

    public static ReferenceProfile Build(TrainingSet set, FeaturePlan plan, double[] scores, string model, string modelVersion)
    {
        var profile = new ReferenceProfile
        {
            FeatureSet = set.FeatureSet,
            FeatureSetVersion = set.FeatureSetVersion,
            Model = model,
            ModelVersion = modelVersion,
            Rows = set.Count,
            FromMs = set.Count == 0 ? 0 : set.TimesMs.Min(),
            ToMs = set.Count == 0 ? 0 : set.TimesMs.Max(),
        };
        var column = new double[set.Count];
        for (var f = 0; f < set.Width; f++)
        {
            for (var i = 0; i < set.Count; i++) column[i] = set.Features[i * set.Width + f];
            var missing = f < 64 ? set.DefaultedMask.Count(m => (m & (1L << f)) != 0) : 0;
            var transform = plan.Features[f].Transform;
            var clock = transform switch { TransformKind.HourOfDay => "hourOfDay", TransformKind.DayOfWeek => "dayOfWeek", _ => "" };
            var categorical = clock.Length > 0 || transform is TransformKind.EqualsText or TransformKind.IndexText or TransformKind.Bucketize;
            var d = Describe(set.FeatureNames[f], column, categorical, missing, set.TimesMs);
            d.Clock = clock;
            profile.Features.Add(d);
        }
        profile.Prediction = Describe("prediction", scores, categorical: false, missing: 0, set.TimesMs);
        return profile;
    }

    /// <summary>
    /// Scores <paramref name="set"/> with the model in <paramref name="modelDirectory"/> (as served), builds its reference
    /// profile and writes it there as <see cref="ReferenceProfile.FileName"/>.
    /// </summary>
    /// <summary>Scores every row of the set with the model, builds its reference profile and saves it beside the model; returns both.</summary>
    public static (ReferenceProfile Profile, double[] Scores) BuildAndSave(string modelDirectory, TrainingSet set, FeaturePlan plan, IProgress<long>? progress = null)
    {
        using var scorer = new StreamInference.Infrastructure.Onnx.OnnxScorer(modelDirectory, plan);
        var scores = StreamInference.Batch.Scoring.RowScoring.PrimaryScores(scorer, plan, set.Features, set.Count, progress);
        var profile = Build(set, plan, scores, scorer.ModelName, scorer.ModelVersion);
        File.WriteAllText(Path.Combine(modelDirectory, ReferenceProfile.FileName), profile.ToJson() + "\n");
        return (profile, scores);
    }

    /// <summary>UTC hour of the day of an event time (what the hour-of-day transform computes).</summary>
    public static int HourOf(long epochMs) => (int)FeatureVectorAssembler.HourOfDay(epochMs);

    /// <param name="timesMs">Event time of each value: when given, the shares are also kept per UTC hour of the day.</param>
    public static DistributionProfile Describe(string name, double[] values, bool categorical, long missing, long[]? timesMs = null)
    {
        var d = DescribeShape(name, values, categorical, missing);
        if (timesMs is not null && d.Count > 0) AddHours(d, values, timesMs);
        return d;
    }

    /// <summary>Per-hour counts over the profile's bins (the same bins as the whole-day shares).</summary>
    private static void AddHours(DistributionProfile d, double[] values, long[] timesMs)
    {
        var bins = d.BinShares.Length;
        var counts = new long[24, bins];
        d.HourCounts = new long[24];
        for (var i = 0; i < values.Length; i++)
        {
            if (!double.IsFinite(values[i])) continue;
            var bin = d.Kind == "categorical" ? Array.BinarySearch(d.Categories, values[i]) : BinOf(d.BinEdges, values[i]);
            if (bin < 0) continue;
            var h = HourOf(timesMs[i]);
            counts[h, bin]++;
            d.HourCounts[h]++;
        }
        d.HourBinShares = Enumerable.Range(0, 24)
            .Select(h => Enumerable.Range(0, bins).Select(b => d.HourCounts[h] == 0 ? 0 : counts[h, b] / (double)d.HourCounts[h]).ToArray())
            .ToArray();
    }

    private static DistributionProfile DescribeShape(string name, double[] values, bool categorical, long missing)
    {
        var sorted = values.Where(double.IsFinite).Order().ToArray();
        var n = sorted.Length;
        var d = new DistributionProfile { Name = name, Count = n, MissingRate = values.Length == 0 ? 0 : missing / (double)values.Length };
        if (n == 0) return d;
        d.Mean = sorted.Average();
        d.Std = Math.Sqrt(sorted.Sum(v => (v - d.Mean) * (v - d.Mean)) / n);
        d.Min = sorted[0];
        d.Max = sorted[^1];
        d.Deciles = Enumerable.Range(1, 9).Select(k => Quantile(sorted, k / 10.0)).ToArray();
        var distinct = sorted.Distinct().ToArray();
        // Categorical: what the transform makes categorical, and two-valued features (flags). Counts and
        // other ordinal integers stay continuous, so a value beyond the training range lands in the
        // open last bin (and KS measures how far it moved) instead of an "unseen category".
        if (categorical || distinct.Length <= 2)
        {
            d.Kind = "categorical";
            d.Categories = distinct;
            d.BinShares = distinct.Select(c => sorted.Count(v => v == c) / (double)n).ToArray();
            return d;
        }
        d.BinEdges = Enumerable.Range(1, Bins - 1).Select(k => Quantile(sorted, k / (double)Bins)).Distinct().ToArray();
        if (d.BinEdges.Length < Bins - 1)
        {
            // Quantile edges collapsed on point masses (e.g. a count that is 0 for most rows): one bin per
            // frequent value instead (its edge just above it), the rest in open tails, so a shift between
            // the masses is counted rather than hidden in one bin.
            d.BinEdges = ValueEdges(sorted);
            d.Binning = "value";
        }
        var counts = new long[d.BinEdges.Length + 1];
        foreach (var v in sorted) counts[BinOf(d.BinEdges, v)]++;
        d.BinShares = counts.Select(c => c / (double)n).ToArray();
        return d;
    }

    /// <summary>
    /// Edges that give each value holding at least 1 % of the rows its own bin (up to <see cref="Bins"/> of the most
    /// frequent), with the rarer values between them sharing the bin above.
    /// </summary>
    private static double[] ValueEdges(double[] sorted)
    {
        var n = sorted.Length;
        var frequent = sorted.GroupBy(v => v).Where(g => g.Count() >= Math.Max(1, n / 100)).OrderByDescending(g => g.Count())
            .Take(Bins).Select(g => g.Key).Order().ToArray();
        var edges = new SortedSet<double>();
        foreach (var v in frequent)
        {
            var above = NextDistinct(sorted, v);
            if (v > sorted[0]) edges.Add(v);                  // the value starts its bin ...
            if (above is { } next) edges.Add(next);            // ... and the next distinct value starts the next
        }
        return [.. edges];
    }

    private static double? NextDistinct(double[] sorted, double v)
    {
        var i = Array.BinarySearch(sorted, v);
        if (i < 0) i = ~i;
        while (i < sorted.Length && sorted[i] <= v) i++;
        return i < sorted.Length ? sorted[i] : null;
    }

    /// <summary>Bin of a value given inner edges: the number of edges at or below it.</summary>
    public static int BinOf(double[] edges, double value) => (int)FeatureVectorAssembler.Bucket(edges, value);

    private static double Quantile(double[] sorted, double q)
    {
        var pos = q * (sorted.Length - 1);
        var lo = (int)Math.Floor(pos);
        var hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
