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
            var categorical = plan.Features[f].Transform is TransformKind.EqualsText or TransformKind.IndexText
                or TransformKind.Bucketize or TransformKind.HourOfDay or TransformKind.DayOfWeek;
            profile.Features.Add(Describe(set.FeatureNames[f], column, categorical, missing));
        }
        profile.Prediction = Describe("prediction", scores, categorical: false, missing: 0);
        return profile;
    }

    public static DistributionProfile Describe(string name, double[] values, bool categorical, long missing)
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
        var counts = new long[d.BinEdges.Length + 1];
        foreach (var v in sorted) counts[BinOf(d.BinEdges, v)]++;
        d.BinShares = counts.Select(c => c / (double)n).ToArray();
        return d;
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
