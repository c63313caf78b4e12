using StreamInference.Batch.Scoring;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Batch.Training;

/// <summary>
/// The held-out rows on which model variants are compared: the labelled rows at or after a model's time split
/// (its manifest's <c>split_at_ms</c>, as <c>train</c> records it), or, for a model without one, the latest
/// <c>testFraction</c> of the labelled rows by event time, as <c>train</c> would cut them.
/// </summary>
/// <param name="Rows">Row indexes into the training set, in event-time order.</param>
/// <param name="Rule">How they were chosen, for people.</param>
public sealed record HeldOutRows(int[] Rows, bool[] Labels, long SplitAtMs, string Rule)
{
    public static HeldOutRows Select(TrainingSet set, ModelManifest? reference, double testFraction = 0.2)
    {
        var labelled = Enumerable.Range(0, set.Count).Where(i => double.IsFinite(set.Labels[i])).OrderBy(i => set.TimesMs[i]).ToArray();
        if (labelled.Length < 100) throw new InvalidDataException($"Only {labelled.Length} labelled rows; at least 100 are needed to compare models.");
        long split;
        string rule;
        if (reference?.Metrics?.GetValueOrDefault("split_at_ms") is > 0 and var recorded)
        {
            split = (long)recorded;
            rule = $"the labelled rows at or after {reference.Name}@{reference.Version}'s time split ({DateTimeOffset.FromUnixTimeMilliseconds(split):yyyy-MM-ddTHH:mm:ssZ})";
        }
        else
        {
            if (testFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(testFraction), "The test fraction must be between 0 and 1.");
            split = set.TimesMs[labelled[(int)(labelled.Length * (1 - testFraction))]];
            rule = $"the latest {testFraction:P0} of the labelled rows by event time";
        }
        var rows = labelled.Where(i => set.TimesMs[i] >= split).ToArray();
        var labels = rows.Select(i => set.Labels[i] > 0.5).ToArray();
        if (!labels.Any(l => l) || labels.All(l => l))
            throw new InvalidDataException($"The held-out rows ({rows.Length}, {rule}) need positive and negative labels.");
        return new HeldOutRows(rows, labels, split, rule);
    }

    /// <summary>The model's primary scores of these rows, scored by ONNX Runtime through the serving scorer.</summary>
    public double[] Score(string modelDirectory, TrainingSet set, FeaturePlan plan, OnnxScorerOptions? options = null)
    {
        using var scorer = new OnnxScorer(modelDirectory, plan, options);
        return Score(scorer, set, plan);
    }

    public double[] Score(OnnxScorer scorer, TrainingSet set, FeaturePlan plan) =>
        RowScoring.PrimaryScores(scorer, plan, Rows.Length, k => set.Row(Rows[k]));

    /// <summary>The AUC of scores of these rows (in <see cref="Rows"/> order).</summary>
    public double Auc(double[] scores) => MlNetModels.Auc(scores, Labels);

    /// <summary>Picks these rows' scores out of scores of every row of the set.</summary>
    public double[] Of(double[] allScores) => [.. Rows.Select(i => allScores[i])];
}
