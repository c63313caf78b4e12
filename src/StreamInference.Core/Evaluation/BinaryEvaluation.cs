namespace StreamInference.Core.Evaluation;

/// <summary>
/// How a binary classifier did on labelled events: ranking (AUC), decisions at the serving threshold (precision,
/// recall), probabilities (log loss, Brier score, expected calibration error), and the sample itself (count,
/// positives, positive rate, mean score). NaN where a figure is undefined (an AUC without both classes, a
/// precision without predicted positives).
/// </summary>
public sealed record BinaryMetrics(
    int Count, int Positives, double PositiveRate, double MeanScore,
    double Auc, double Precision, double Recall, double LogLoss, double Brier, double CalibrationError, double Threshold);

/// <summary>
/// Exact metrics of scored, labelled events. The AUC is the Mann–Whitney statistic over midranks (ties count a
/// half), O(n log n); everything else is one pass. Written here rather than taken from ML.NET's evaluator, which
/// needs an IDataView per window and offers no paired comparison of two models on the same events (<see cref="DeLong"/>).
/// </summary>
public static class BinaryEvaluation
{
    /// <summary>Probabilities are clipped to [ε, 1 − ε] for the log loss (the convention of scikit-learn and ML.NET).</summary>
    public const double LogLossEpsilon = 1e-15;

    /// <param name="calibrationBins">Equal-width bins over [0, 1] for the expected calibration error.</param>
    public static BinaryMetrics Compute(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels, double threshold = 0.5, int calibrationBins = 10)
    {
        if (scores.Length != labels.Length) throw new ArgumentException($"{scores.Length} scores for {labels.Length} labels.");
        ArgumentOutOfRangeException.ThrowIfLessThan(calibrationBins, 1);
        var n = scores.Length;
        int positives = 0, truePositives = 0, predictedPositives = 0;
        double logLoss = 0, brier = 0, sum = 0;
        var binScore = new double[calibrationBins];
        var binLabel = new double[calibrationBins];
        var binCount = new int[calibrationBins];
        for (var i = 0; i < n; i++)
        {
            var p = scores[i];
            var y = labels[i];
            if (y) positives++;
            if (p > threshold)
            {
                predictedPositives++;
                if (y) truePositives++;
            }
            var clipped = Math.Clamp(p, LogLossEpsilon, 1 - LogLossEpsilon);
            logLoss -= y ? Math.Log(clipped) : Math.Log(1 - clipped);
            var error = p - (y ? 1 : 0);
            brier += error * error;
            sum += p;
            var bin = Math.Clamp((int)(p * calibrationBins), 0, calibrationBins - 1);
            binScore[bin] += p;
            binLabel[bin] += y ? 1 : 0;
            binCount[bin]++;
        }
        var calibration = 0.0;
        for (var b = 0; b < calibrationBins; b++)
            if (binCount[b] > 0) calibration += Math.Abs(binScore[b] - binLabel[b]) / n;
        return new BinaryMetrics(n, positives, n == 0 ? double.NaN : positives / (double)n, n == 0 ? double.NaN : sum / n,
            Auc(scores, labels),
            predictedPositives == 0 ? double.NaN : truePositives / (double)predictedPositives,
            positives == 0 ? double.NaN : truePositives / (double)positives,
            n == 0 ? double.NaN : logLoss / n, n == 0 ? double.NaN : brier / n, n == 0 ? double.NaN : calibration, threshold);
    }

    /// <summary>The probability that a random positive scores above a random negative (ties a half); NaN without both classes.</summary>
    public static double Auc(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels)
    {
        var n = scores.Length;
        var ranks = MidRanks(scores);
        double positiveRanks = 0;
        long positives = 0;
        for (var i = 0; i < n; i++)
        {
            if (!labels[i]) continue;
            positiveRanks += ranks[i];
            positives++;
        }
        var negatives = n - positives;
        if (positives == 0 || negatives == 0) return double.NaN;
        return (positiveRanks - positives * (positives + 1) / 2.0) / ((double)positives * negatives);
    }

    /// <summary>1-based ranks of <paramref name="values"/>, tied values sharing the mean of their ranks.</summary>
    public static double[] MidRanks(ReadOnlySpan<double> values)
    {
        var n = values.Length;
        var order = new int[n];
        for (var i = 0; i < n; i++) order[i] = i;
        var keys = values.ToArray();
        Array.Sort(keys, order);
        var ranks = new double[n];
        var start = 0;
        while (start < n)
        {
            var end = start + 1;
            while (end < n && keys[end] == keys[start]) end++;
            var rank = (start + 1 + end) / 2.0;   // mean of ranks start+1 .. end
            for (var k = start; k < end; k++) ranks[order[k]] = rank;
            start = end;
        }
        return ranks;
    }
}
