using MathNet.Numerics.Distributions;

namespace StreamInference.Core.Evaluation;

/// <summary>
/// Two models' AUCs on the same labelled events, compared by DeLong's test for correlated ROC curves: the
/// difference (challenger − champion), its standard error from the structural components of both AUCs, the
/// z statistic, the one-sided p-value that the challenger is better, and a two-sided 95 % interval.
/// </summary>
public sealed record PairedAucTest(
    int Count, int Positives, double ChampionAuc, double ChallengerAuc, double Difference, double StandardError, double Z, double PValue,
    double Lower95, double Upper95);

/// <summary>One model's AUC, its standard error and a two-sided interval (clipped to [0, 1]).</summary>
public sealed record AucInterval(double Auc, double StandardError, double Lower, double Upper);

/// <summary>
/// DeLong, DeLong and Clarke-Pearson (1988), computed in O(n log n) with midranks (Sun and Xu, 2014): for each
/// model, a positive's placement V10 is the share of negatives it outscores, a negative's V01 the share of positives
/// that outscore it; the AUCs are their means, and the covariance of the two AUCs is S10/m + S01/n, with S10 and S01
/// the sample covariance matrices of the placements over the m positives and the n negatives.
/// </summary>
public static class DeLong
{
    public static PairedAucTest Compare(ReadOnlySpan<double> champion, ReadOnlySpan<double> challenger, ReadOnlySpan<bool> labels)
    {
        if (champion.Length != labels.Length || challenger.Length != labels.Length)
            throw new ArgumentException($"{champion.Length} and {challenger.Length} scores for {labels.Length} labels.");
        var m = 0;
        foreach (var y in labels) if (y) m++;
        var n = labels.Length - m;
        if (m < 2 || n < 2)
            return new PairedAucTest(labels.Length, m, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);

        var (aucA, v10A, v01A) = Placements(champion, labels, m, n);
        var (aucB, v10B, v01B) = Placements(challenger, labels, m, n);
        var s10 = Covariance(v10A, v10B, aucA, aucB);
        var s01 = Covariance(v01A, v01B, aucA, aucB);
        var variance = (s10.AA + s10.BB - 2 * s10.AB) / m + (s01.AA + s01.BB - 2 * s01.AB) / n;
        var difference = aucB - aucA;
        var se = Math.Sqrt(Math.Max(variance, 0));
        var z = se > 0 ? difference / se : difference > 0 ? double.PositiveInfinity : difference < 0 ? double.NegativeInfinity : 0;
        var p = 1 - Normal.CDF(0, 1, z);
        var half = 1.959963984540054 * se;
        return new PairedAucTest(labels.Length, m, aucA, aucB, difference, se, z, p, difference - half, difference + half);
    }

    /// <summary>
    /// One model's AUC with its DeLong standard error, S10/m + S01/n over its own placements, and the two-sided
    /// (1 − alpha) interval: what the live evaluation compares with the model's training AUC. NaN without two of each class.
    /// </summary>
    public static AucInterval Single(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels, double alpha = 0.05)
    {
        if (scores.Length != labels.Length) throw new ArgumentException($"{scores.Length} scores for {labels.Length} labels.");
        var m = 0;
        foreach (var y in labels) if (y) m++;
        var n = labels.Length - m;
        if (m < 2 || n < 2) return new AucInterval(double.NaN, double.NaN, double.NaN, double.NaN);
        var (auc, v10, v01) = Placements(scores, labels, m, n);
        var s10 = Covariance(v10, v10, auc, auc).AA;
        var s01 = Covariance(v01, v01, auc, auc).AA;
        var se = Math.Sqrt(Math.Max(s10 / m + s01 / n, 0));
        var half = Normal.InvCDF(0, 1, 1 - alpha / 2) * se;
        return new AucInterval(auc, se, Math.Max(0, auc - half), Math.Min(1, auc + half));
    }

    /// <summary>The AUC and the placements of one model's positives (V10) and negatives (V01), from midranks.</summary>
    private static (double Auc, double[] V10, double[] V01) Placements(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels, int m, int n)
    {
        var positives = new double[m];
        var negatives = new double[n];
        int i = 0, j = 0;
        for (var k = 0; k < labels.Length; k++)
        {
            if (labels[k]) positives[i++] = scores[k];
            else negatives[j++] = scores[k];
        }
        var all = BinaryEvaluation.MidRanks(scores);
        var withinPositives = BinaryEvaluation.MidRanks(positives);
        var withinNegatives = BinaryEvaluation.MidRanks(negatives);
        var v10 = new double[m];
        var v01 = new double[n];
        i = j = 0;
        double sum = 0;
        for (var k = 0; k < labels.Length; k++)
        {
            if (labels[k])
            {
                // Negatives below this positive (ties a half): its rank among all minus its rank among the positives.
                v10[i] = (all[k] - withinPositives[i]) / n;
                sum += v10[i];
                i++;
            }
            else
            {
                // Positives above this negative: m minus the positives at or below it (ties a half).
                v01[j] = 1 - (all[k] - withinNegatives[j]) / m;
                j++;
            }
        }
        return (sum / m, v10, v01);
    }

    private static (double AA, double BB, double AB) Covariance(double[] a, double[] b, double meanA, double meanB)
    {
        double aa = 0, bb = 0, ab = 0;
        for (var k = 0; k < a.Length; k++)
        {
            var da = a[k] - meanA;
            var db = b[k] - meanB;
            aa += da * da;
            bb += db * db;
            ab += da * db;
        }
        var d = a.Length - 1;
        return (aa / d, bb / d, ab / d);
    }
}

/// <summary>What the promotion gate decided, and why, in one line.</summary>
public sealed record GateDecision(bool Promote, string Reason, PairedAucTest Test);

/// <summary>
/// Promotes a challenger only when it is significantly better than the champion on the same labelled events: the
/// lower end of the two-sided (1 − alpha) interval of the AUC difference (DeLong) lies above <c>minimumGain</c>. Two
/// equal models pass that with probability alpha / 2 (the interval misses on the upper side), so false promotions
/// stay below alpha. Too few labelled events of either class refuse, as does any test that cannot be computed.
/// </summary>
public static class PromotionGate
{
    public static GateDecision Decide(PairedAucTest test, double alpha = 0.05, double minimumGain = 0, int minimumPerClass = 100)
    {
        if (alpha is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(alpha), "alpha must be in (0, 1).");
        string F(FormattableString s) => s.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var negatives = test.Count - test.Positives;
        if (test.Positives < minimumPerClass || negatives < minimumPerClass)
            return new GateDecision(false, F($"too few labelled events: {test.Positives} positive and {negatives} negative (at least {minimumPerClass} of each)"), test);
        if (!double.IsFinite(test.Difference) || !double.IsFinite(test.StandardError))
            return new GateDecision(false, "the AUC difference cannot be tested on these events", test);
        var z = Normal.InvCDF(0, 1, 1 - alpha / 2);
        var (lower, upper) = (test.Difference - z * test.StandardError, test.Difference + z * test.StandardError);
        var summary = F($"AUC {test.ChallengerAuc:0.0000} vs {test.ChampionAuc:0.0000}, Δ {test.Difference:+0.0000;-0.0000} ({1 - alpha:P0} CI {lower:+0.0000;-0.0000} .. {upper:+0.0000;-0.0000}), one-sided p {(test.PValue < 1e-4 ? "< 0.0001" : test.PValue.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture))}, on {test.Count} events");
        return lower > minimumGain
            ? new GateDecision(true, F($"significantly better: {summary}"), test)
            : new GateDecision(false, F($"not significantly better: {summary}; the interval's lower end must exceed {minimumGain}"), test);
    }
}
