using StreamInference.Core.Evaluation;

namespace StreamInference.Core.Tests;

/// <summary>
/// The live-performance metrics against independent computations on the same events (issue 19, acceptance 1), and the
/// promotion gate simulated (acceptance 4): it promotes a challenger 0.02 AUC better at n = 50,000, and over 200 runs
/// of two equal models it promotes no more often than alpha.
/// </summary>
public sealed class EvaluationTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>Scores with many ties (rounded to 0.01) and labels drawn from them, so the AUC's tie handling counts.</summary>
    private static (double[] Scores, bool[] Labels) Sample(int n, int seed)
    {
        var random = new Random(seed);
        var scores = new double[n];
        var labels = new bool[n];
        for (var i = 0; i < n; i++)
        {
            scores[i] = Math.Round(random.NextDouble(), 2);
            labels[i] = random.NextDouble() < 0.1 + 0.6 * scores[i] * scores[i];
        }
        return (scores, labels);
    }

    [Fact]
    public void Metrics_EqualIndependentComputations_ToTheNinthDecimal()
    {
        var (scores, labels) = Sample(3000, 19);
        var m = BinaryEvaluation.Compute(scores, labels, threshold: 0.5);

        // AUC by counting every positive–negative pair (Mann–Whitney U), ties a half.
        double wins = 0;
        long pairs = 0;
        for (var i = 0; i < scores.Length; i++)
        {
            if (!labels[i]) continue;
            for (var j = 0; j < scores.Length; j++)
            {
                if (labels[j]) continue;
                pairs++;
                wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0;
            }
        }
        Assert.Equal(wins / pairs, m.Auc, 1e-9);

        var tp = scores.Zip(labels).Count(x => x.First > 0.5 && x.Second);
        var fp = scores.Zip(labels).Count(x => x.First > 0.5 && !x.Second);
        var fn = scores.Zip(labels).Count(x => x.First <= 0.5 && x.Second);
        Assert.Equal(tp / (double)(tp + fp), m.Precision, 1e-9);
        Assert.Equal(tp / (double)(tp + fn), m.Recall, 1e-9);
        Assert.Equal(scores.Zip(labels).Average(x => Math.Pow(x.First - (x.Second ? 1 : 0), 2)), m.Brier, 1e-9);
        Assert.Equal(scores.Zip(labels).Average(x =>
        {
            var p = Math.Clamp(x.First, 1e-15, 1 - 1e-15);
            return -(x.Second ? Math.Log(p) : Math.Log(1 - p));
        }), m.LogLoss, 1e-9);
        var ece = scores.Zip(labels).GroupBy(x => Math.Min(9, (int)(x.First * 10)))
            .Sum(g => g.Count() / (double)scores.Length * Math.Abs(g.Average(x => x.First) - g.Average(x => x.Second ? 1.0 : 0.0)));
        Assert.Equal(ece, m.CalibrationError, 1e-9);
        Assert.Equal(labels.Count(y => y), m.Positives);
        Assert.Equal(labels.Count(y => y) / 3000.0, m.PositiveRate, 1e-12);
    }

    [Fact]
    public void UndefinedFigures_AreNaN_NotZero()
    {
        var m = BinaryEvaluation.Compute([0.2, 0.3], [false, false]);
        Assert.True(double.IsNaN(m.Auc));        // one class only
        Assert.True(double.IsNaN(m.Precision));  // nothing predicted positive
        Assert.True(double.IsNaN(m.Recall));     // no positives
        Assert.Equal(0.5, BinaryEvaluation.Auc([0.5, 0.5], [true, false]));
    }

    /// <summary>DeLong's standard error of the AUC difference agrees with a paired bootstrap of the same events.</summary>
    [Fact]
    public void SingleModelAucInterval_AgreesWithABootstrap_AndCoversTheTrueAuc()
    {
        var (a, _, y) = Binormal(4000, championAuc: 0.80, challengerAuc: 0.80, correlation: 0, seed: 9);
        var single = DeLong.Single(a, y);
        Assert.Equal(BinaryEvaluation.Auc(a, y), single.Auc, 1e-12);
        var random = new Random(13);
        var aucs = new double[400];
        var (ra, ry) = (new double[y.Length], new bool[y.Length]);
        for (var r = 0; r < aucs.Length; r++)
        {
            for (var i = 0; i < y.Length; i++)
            {
                var k = random.Next(y.Length);
                (ra[i], ry[i]) = (a[k], y[k]);
            }
            aucs[r] = BinaryEvaluation.Auc(ra, ry);
        }
        var mean = aucs.Average();
        var bootstrapSe = Math.Sqrt(aucs.Sum(d => (d - mean) * (d - mean)) / (aucs.Length - 1));
        Assert.InRange(single.StandardError / bootstrapSe, 0.85, 1.15);
        Assert.InRange(single.Auc, single.Lower, single.Upper);
        Assert.Equal(2 * 1.959963984540054 * single.StandardError, single.Upper - single.Lower, 1e-9);

        // Coverage: the 95 % interval holds the true AUC (0.80) in about 95 % of independent samples.
        var covered = 0;
        for (var seed = 100; seed < 300; seed++)
        {
            var (s, _, l) = Binormal(1000, championAuc: 0.80, challengerAuc: 0.80, correlation: 0, seed: seed);
            var i = DeLong.Single(s, l);
            if (i.Lower <= 0.80 && 0.80 <= i.Upper) covered++;
        }
        output.WriteLine($"single-model AUC {single.Auc:0.0000} ± {single.StandardError:0.0000} (bootstrap SE {bootstrapSe:0.0000}); 95 % interval covered the true AUC in {covered} of 200 samples");
        Assert.InRange(covered, 180, 198);
    }

    [Fact]
    public void DeLongStandardError_AgreesWithAPairedBootstrap()
    {
        var (a, b, y) = Binormal(4000, championAuc: 0.80, challengerAuc: 0.83, correlation: 0.6, seed: 5);
        var test = DeLong.Compare(a, b, y);
        Assert.Equal(BinaryEvaluation.Auc(a, y), test.ChampionAuc, 1e-12);
        Assert.Equal(BinaryEvaluation.Auc(b, y), test.ChallengerAuc, 1e-12);

        var random = new Random(11);
        var differences = new double[400];
        var (ra, rb, ry) = (new double[y.Length], new double[y.Length], new bool[y.Length]);
        for (var r = 0; r < differences.Length; r++)
        {
            for (var i = 0; i < y.Length; i++)
            {
                var k = random.Next(y.Length);
                (ra[i], rb[i], ry[i]) = (a[k], b[k], y[k]);
            }
            differences[r] = BinaryEvaluation.Auc(rb, ry) - BinaryEvaluation.Auc(ra, ry);
        }
        var mean = differences.Average();
        var bootstrapSe = Math.Sqrt(differences.Sum(d => (d - mean) * (d - mean)) / (differences.Length - 1));
        Assert.InRange(test.StandardError / bootstrapSe, 0.85, 1.15);
    }

    [Fact]
    public void Gate_PromotesAChallenger002Better_AtFiftyThousandEvents()
    {
        for (var seed = 0; seed < 5; seed++)
        {
            var (a, b, y) = Binormal(50_000, championAuc: 0.80, challengerAuc: 0.82, correlation: 0.5, seed: 100 + seed);
            var decision = PromotionGate.Decide(DeLong.Compare(a, b, y), alpha: 0.05);
            Assert.True(decision.Promote, decision.Reason);
            output.WriteLine(decision.Reason);
            Assert.InRange(decision.Test.Difference, 0.01, 0.03);
        }
    }

    [Fact]
    public void Gate_OverTwoHundredRunsOfEqualModels_PromotesNoMoreOftenThanAlpha()
    {
        const double alpha = 0.05;
        var promotions = 0;
        for (var run = 0; run < 200; run++)
        {
            var (a, b, y) = Binormal(5_000, championAuc: 0.80, challengerAuc: 0.80, correlation: 0.5, seed: 1000 + run);
            if (PromotionGate.Decide(DeLong.Compare(a, b, y), alpha).Promote) promotions++;
        }
        output.WriteLine($"{promotions} false promotions in 200 runs at alpha {alpha}");
        Assert.True(promotions <= alpha * 200, $"{promotions} false promotions in 200 runs");
    }

    [Fact]
    public void Gate_Refuses_TooFewLabels_AndAWorseChallenger()
    {
        var (a, b, y) = Binormal(500, championAuc: 0.8, challengerAuc: 0.9, correlation: 0.5, seed: 3);
        Assert.Contains("too few labelled events", PromotionGate.Decide(DeLong.Compare(a, b, y), minimumPerClass: 1000).Reason);
        var (c, d, z) = Binormal(20_000, championAuc: 0.85, challengerAuc: 0.80, correlation: 0.5, seed: 4);
        var worse = PromotionGate.Decide(DeLong.Compare(c, d, z));
        Assert.False(worse.Promote);
        Assert.StartsWith("not significantly better", worse.Reason);
    }

    /// <summary>
    /// Two models' scores on the same events: binormal, each AUC as asked (AUC = Φ(d/√2) for a mean shift d between
    /// classes of unit-variance scores), their noise correlated as two models of the same data are; 10 % positives.
    /// </summary>
    private static (double[] Champion, double[] Challenger, bool[] Labels) Binormal(int n, double championAuc, double challengerAuc, double correlation, int seed)
    {
        var random = new Random(seed);
        double Gaussian() => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        var da = Math.Sqrt(2) * MathNet.Numerics.Distributions.Normal.InvCDF(0, 1, championAuc);
        var db = Math.Sqrt(2) * MathNet.Numerics.Distributions.Normal.InvCDF(0, 1, challengerAuc);
        var (a, b, y) = (new double[n], new double[n], new bool[n]);
        for (var i = 0; i < n; i++)
        {
            y[i] = random.NextDouble() < 0.1;
            var shared = Gaussian();
            var own = Math.Sqrt(1 - correlation * correlation);
            a[i] = (y[i] ? da : 0) + correlation * shared + own * Gaussian();
            b[i] = (y[i] ? db : 0) + correlation * shared + own * Gaussian();
        }
        return (a, b, y);
    }
}
