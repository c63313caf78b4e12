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
        var scores = new double[count];
        var batch = new EventBatch(plan, BatchSize, scorer.OutputWidth);
        var width = plan.FeatureCount;
        for (var start = 0; start < count; start += batch.Capacity)
        {
            var n = Math.Min(batch.Capacity, count - start);
            features.AsSpan(start * width, n * width).CopyTo(batch.Features);
            batch.OkCount = n;
            scorer.Score(batch);
            for (var k = 0; k < n; k++) scores[start + k] = batch.ScoreRow(k)[scorer.PrimaryScoreIndex];
            progress?.Report(start + n);
        }
        return scores;
    }
}
