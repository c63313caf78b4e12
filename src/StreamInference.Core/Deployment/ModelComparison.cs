namespace StreamInference.Core.Deployment;

/// <summary>
/// One window of a live champion/challenger comparison on the same events: how often they agree at the decision
/// threshold (and the 2×2 table behind it), how far apart their scores are (signed mean, quantiles of the absolute
/// difference), whether they rank events alike (Spearman's rank correlation; NaN when either is constant), and what
/// each costs per scored row.
/// </summary>
public sealed record ComparisonReport(
    long Sequence, string Champion, string Challenger, int Events, double Threshold,
    double Agreement, int BothPositive, int ChampionOnly, int ChallengerOnly, int BothNegative,
    double MeanDifference, double AbsDifferenceP50, double AbsDifferenceP90, double AbsDifferenceP99, double RankCorrelation,
    double ChampionMicrosPerRow, double ChallengerMicrosPerRow);

/// <summary>
/// Accumulates champion and challenger scores of the same events (a shadow scores every event the champion does; a
/// canary's events are scored by the champion too when it runs as a comparison) and closes a
/// <see cref="ComparisonReport"/> every <see cref="WindowEvents"/> pairs. Single-threaded, like the score stage that
/// feeds it; the window's buffers are allocated once.
/// </summary>
public sealed class ModelComparison
{
    private readonly double[] _champion;
    private readonly double[] _challenger;
    private int _count;
    private long _sequence;
    private double _championSeconds, _challengerSeconds;
    private long _championRows, _challengerRows;

    public ModelComparison(string champion, string challenger, int windowEvents = 2000, double threshold = 0.5)
    {
        if (windowEvents < 10) throw new ArgumentOutOfRangeException(nameof(windowEvents), "A comparison window needs at least 10 events.");
        Champion = champion;
        Challenger = challenger;
        WindowEvents = windowEvents;
        Threshold = threshold;
        _champion = new double[windowEvents];
        _challenger = new double[windowEvents];
    }

    public string Champion { get; }
    public string Challenger { get; }
    public int WindowEvents { get; }
    public double Threshold { get; }
    public ComparisonReport? LastReport { get; private set; }

    /// <summary>Raised when a window closes, on the caller's thread.</summary>
    public event Action<ComparisonReport>? WindowClosed;

    /// <summary>Scoring time of one batch by either model (for the per-row cost in the report).</summary>
    public void ObserveCost(bool challenger, int rows, TimeSpan elapsed)
    {
        if (challenger)
        {
            _challengerRows += rows;
            _challengerSeconds += elapsed.TotalSeconds;
        }
        else
        {
            _championRows += rows;
            _championSeconds += elapsed.TotalSeconds;
        }
    }

    /// <summary>One event's two scores; non-finite pairs are skipped (a failed score is not a disagreement).</summary>
    public void Observe(double champion, double challenger)
    {
        if (!double.IsFinite(champion) || !double.IsFinite(challenger)) return;
        _champion[_count] = champion;
        _challenger[_count] = challenger;
        if (++_count == WindowEvents) Close();
    }

    /// <summary>Closes the window now (at shutdown, or for a report on demand); null when it holds no pairs.</summary>
    public ComparisonReport? Close()
    {
        if (_count == 0) return null;
        var n = _count;
        var a = _champion.AsSpan(0, n);
        var b = _challenger.AsSpan(0, n);
        int bothPositive = 0, championOnly = 0, challengerOnly = 0;
        var sumDiff = 0.0;
        var abs = new double[n];
        for (var i = 0; i < n; i++)
        {
            var pa = a[i] > Threshold;
            var pb = b[i] > Threshold;
            if (pa && pb) bothPositive++;
            else if (pa) championOnly++;
            else if (pb) challengerOnly++;
            sumDiff += b[i] - a[i];
            abs[i] = Math.Abs(b[i] - a[i]);
        }
        Array.Sort(abs);
        var report = new ComparisonReport(
            ++_sequence, Champion, Challenger, n, Threshold,
            (n - championOnly - challengerOnly) / (double)n, bothPositive, championOnly, challengerOnly, n - bothPositive - championOnly - challengerOnly,
            sumDiff / n, Quantile(abs, 0.5), Quantile(abs, 0.9), Quantile(abs, 0.99), Spearman(a, b),
            PerRow(_championSeconds, _championRows), PerRow(_challengerSeconds, _challengerRows));
        _count = 0;
        _championSeconds = _challengerSeconds = 0;
        _championRows = _challengerRows = 0;
        LastReport = report;
        WindowClosed?.Invoke(report);
        return report;
    }

    private static double PerRow(double seconds, long rows) => rows == 0 ? double.NaN : seconds * 1e6 / rows;

    /// <summary>The q-quantile of sorted values, interpolated between neighbours.</summary>
    public static double Quantile(ReadOnlySpan<double> sorted, double q)
    {
        if (sorted.Length == 0) return double.NaN;
        var h = (sorted.Length - 1) * q;
        var lo = (int)Math.Floor(h);
        var hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Spearman's rank correlation: Pearson's correlation of the ranks, ties taking their average rank; NaN when either side is constant.</summary>
    public static double Spearman(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        var ra = Evaluation.BinaryEvaluation.MidRanks(a);
        var rb = Evaluation.BinaryEvaluation.MidRanks(b);
        var n = ra.Length;
        var mean = (n + 1) / 2.0;
        double sab = 0, saa = 0, sbb = 0;
        for (var i = 0; i < n; i++)
        {
            var da = ra[i] - mean;
            var db = rb[i] - mean;
            sab += da * db;
            saa += da * da;
            sbb += db * db;
        }
        return saa == 0 || sbb == 0 ? double.NaN : sab / Math.Sqrt(saa * sbb);
    }
}
