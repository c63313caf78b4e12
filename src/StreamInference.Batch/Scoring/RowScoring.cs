using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Batch.Scoring;

/// <summary>Scores stored feature vectors with the serving scorer, in pooled batches.</summary>
public static class RowScoring
{
    public const int BatchSize = 4096;

    /// <summary>The primary score of each of <paramref name="count"/> row-major vectors in <paramref name="features"/>.</summary>
    public static double[] PrimaryScores(OnnxScorer scorer, FeaturePlan plan, float[] features, int count, IProgress<long>? progress = null)
    {
        var width = plan.FeatureCount;
        return PrimaryScores(scorer, plan, count, (start, n, batch) => features.AsSpan(start * width, n * width).CopyTo(batch), progress);
    }

    /// <summary>
    /// The primary score of each of <paramref name="count"/> rows that <paramref name="row"/> gives by index (a row of a
    /// training set, of a jagged array): copied straight into the pooled batch, with no flat copy of them all first.
    /// </summary>
    public static double[] PrimaryScores(OnnxScorer scorer, FeaturePlan plan, int count, Func<int, ReadOnlySpan<float>> row)
    {
        var width = plan.FeatureCount;
        return PrimaryScores(scorer, plan, count, (start, n, batch) =>
        {
            for (var k = 0; k < n; k++) row(start + k).CopyTo(batch.Slice(k * width, width));
        }, progress: null);
    }

    private delegate void FillBatch(int start, int count, Span<float> batch);

    private static double[] PrimaryScores(OnnxScorer scorer, FeaturePlan plan, int count, FillBatch fill, IProgress<long>? progress)
    {
        var scores = new double[count];
        var batch = new EventBatch(plan, BatchSize, scorer.OutputWidth);
        for (var start = 0; start < count; start += batch.Capacity)
        {
            var n = Math.Min(batch.Capacity, count - start);
            fill(start, n, batch.Features);
            batch.OkCount = n;
            scorer.Score(batch);
            for (var k = 0; k < n; k++) scores[start + k] = batch.ScoreRow(k)[scorer.PrimaryScoreIndex];
            progress?.Report(start + n);
        }
        return scores;
    }
}
