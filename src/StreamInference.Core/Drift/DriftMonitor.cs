using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Core.Drift;

public enum DriftSeverity { Ok = 0, Warn = 1, Alert = 2 }

/// <summary>
/// How drift is judged, in one place (bound as is from the <c>Drift</c> section of the processor's settings):
/// windows are cut every <see cref="WindowEvents"/> events, or every <see cref="WindowSeconds"/> when set;
/// tests (KS, chi-squared) alert below a p-value, distances warn/alert above a value.
/// </summary>
public class DriftSettings
{
    /// <summary>Tumbling windows of this many scored events ...</summary>
    public int WindowEvents { get; set; } = 5_000;
    /// <summary>... or, when above 0, of this many seconds (processing time).</summary>
    public double WindowSeconds { get; set; }
    /// <summary>Time windows with fewer events are reported without statistics (too small to judge).</summary>
    public int MinWindowEvents { get; set; } = 200;
    public double PsiWarn { get; set; } = 0.1;
    /// <summary>
    /// A test rejecting (p below <see cref="Alpha"/>) while PSI stays under this is not reported: windows of thousands
    /// of events make the tests reject shifts too small to matter, and features looked up per entity (a merchant's
    /// rate) repeat one value for all of its events, so a window's sample is clustered and the tests, which assume
    /// independent rows, overstate significance.
    /// </summary>
    public double PsiNegligible { get; set; } = 0.05;
    public double PsiAlert { get; set; } = 0.25;
    public double JsWarn { get; set; } = 0.1;
    public double JsAlert { get; set; } = 0.2;
    /// <summary>Significance level of the per-window KS test (continuous) and chi-squared test (categorical).</summary>
    public double Alpha { get; set; } = 0.01;
    /// <summary>Absolute change of the missing/defaulted rate versus the reference.</summary>
    public double MissingRateWarn { get; set; } = 0.05;
    public double MissingRateAlert { get; set; } = 0.10;
    /// <summary>
    /// Time-of-day conditioning: each hour's reference shares are shrunk toward the whole-day shares as if this
    /// many whole-day rows were added to the hour (sparse hours lean on the day; well-filled ones keep their own).
    /// </summary>
    public double HourSmoothingRows { get; set; } = 20;
}

/// <summary>Drift of one feature (or of the prediction) in one window.</summary>
public sealed record FeatureDrift(
    string Name, string Kind, long Count, double MissingRate, double ReferenceMissingRate,
    double Psi, double Ks, double KsPValue, double JsDistance, double ChiSquared, double ChiSquaredPValue,
    DriftSeverity Severity, IReadOnlyList<string> Breaches);

/// <summary>The drift report of one window.</summary>
public sealed record DriftReport(
    string Model, string ModelVersion, string FeatureSet, int FeatureSetVersion,
    long WindowStartMs, long WindowEndMs, long Events,
    IReadOnlyList<FeatureDrift> Features, FeatureDrift Prediction)
{
    public DriftSeverity MaxSeverity => Features.Append(Prediction).Max(f => f.Severity);
    /// <summary>1 for the monitor's first window, then 2, 3, …</summary>
    public long Sequence { get; init; }
}

/// <summary>Counts of one feature over the reference profile's bins (plus an "other" bin for unseen categories).</summary>
public sealed class BinnedCounts
{
    private const int LinearSearchEdges = 16;
    private readonly double[] _edges;
    private readonly double[] _categories;
    // Integer categories in a small range map through a table; others use a binary search.
    private readonly int[]? _table;
    private readonly double _tableMin;
    private readonly long[] _counts;
    private long _total;

    public BinnedCounts(DistributionProfile reference)
    {
        Reference = reference;
        IsCategorical = reference.Kind == "categorical";
        _edges = reference.BinEdges;
        _categories = reference.Categories;
        for (var i = 1; i < _edges.Length; i++)
            if (!(_edges[i] > _edges[i - 1])) throw new InvalidDataException($"Reference profile of '{reference.Name}': bin edges must be strictly ascending.");
        for (var i = 1; i < _categories.Length; i++)
            if (!(_categories[i] > _categories[i - 1])) throw new InvalidDataException($"Reference profile of '{reference.Name}': categories must be strictly ascending.");
        // Reference shares, with a trailing "other" bin (share 0) for categories not seen in training.
        var bins = IsCategorical ? _categories.Length + 1 : _edges.Length + 1;
        Expected = new double[bins];
        reference.BinShares.AsSpan(0, Math.Min(reference.BinShares.Length, bins)).CopyTo(Expected);
        Conditioned = new double[bins];
        _counts = new long[bins];
        if (IsCategorical && _categories.Length > 0 && _categories.All(c => c == Math.Floor(c))
            && _categories[^1] - _categories[0] < 256)
        {
            _tableMin = _categories[0];
            _table = new int[(int)(_categories[^1] - _tableMin) + 1];
            Array.Fill(_table, _categories.Length);
            for (var i = 0; i < _categories.Length; i++) _table[(int)(_categories[i] - _tableMin)] = i;
        }
    }

    public DistributionProfile Reference { get; }
    public bool IsCategorical { get; }
    public double[] Expected { get; }
    /// <summary>Scratch for the reference conditioned on a window's hours (one per feature, reused window after window).</summary>
    public double[] Conditioned { get; }
    public long[] Counts => _counts;
    public long Missing { get; set; }
    public long Total => _total;

    /// <summary>The bin of a value: edges at or below it (continuous), its category's position or "other" (categorical).</summary>
    public int BinOf(double value)
    {
        if (_table is { } table)
        {
            var d = value - _tableMin;
            return d >= 0 && d < table.Length && d == Math.Floor(d) ? table[(int)d] : _categories.Length;
        }
        if (IsCategorical)
        {
            var i = Array.BinarySearch(_categories, value);
            return i >= 0 ? i : _categories.Length;
        }
        var edges = _edges;
        if (edges.Length > LinearSearchEdges) return (int)FeatureVectorAssembler.Bucket(edges, value);
        var bin = 0;
        for (var i = 0; i < edges.Length; i++) bin += value >= edges[i] ? 1 : 0;
        return bin;
    }

    public void Add(double value)
    {
        _total++;
        _counts[BinOf(value)]++;
    }

    public void Clear()
    {
        Array.Clear(_counts);
        Missing = 0;
        _total = 0;
    }
}

/// <summary>
/// Online drift monitoring against a model's reference profile: per feature and for the primary score,
/// counts over the reference bins in tumbling windows; when a window closes, PSI, KS (binned, with its
/// p-value), Jensen–Shannon distance, chi-squared (categoricals) and the missing rate are computed and a
/// <see cref="DriftReport"/> is handed to <see cref="WindowClosed"/>. Updating is allocation-free; the
/// statistics are computed once per window. Not thread-safe: one pipeline stage calls it.
/// </summary>
public sealed class DriftMonitor
{
    private readonly ReferenceProfile _profile;
    private readonly DriftSettings _settings;
    private readonly TimeProvider _time;
    private readonly BinnedCounts[] _features;
    private readonly BinnedCounts _prediction;
    private long _events;
    private long _windowStartMs;
    // Event-time mix of the window: events per UTC hour of the day, and the span of their event times.
    private readonly long[] _hours = new long[24];
    private long _minEventMs = long.MaxValue, _maxEventMs = long.MinValue;

    public DriftMonitor(ReferenceProfile profile, FeaturePlan plan, DriftSettings? settings = null, TimeProvider? time = null)
    {
        if (profile.FeatureSet != plan.Name || profile.FeatureSetVersion != plan.Version)
            throw new InvalidDataException($"The reference profile is for feature set '{profile.FeatureSet}' v{profile.FeatureSetVersion}, the loaded definitions are '{plan.Name}' v{plan.Version}.");
        var names = profile.Features.Select(f => f.Name).ToArray();
        if (!names.SequenceEqual(plan.Features.Select(f => f.Name)))
            throw new InvalidDataException($"The reference profile's features [{string.Join(", ", names)}] differ from the feature set's.");
        _profile = profile;
        _settings = settings ?? new DriftSettings();
        if (_settings.WindowSeconds <= 0 && _settings.WindowEvents < 1) throw new ArgumentException("Drift windows need WindowEvents >= 1 or WindowSeconds > 0.");
        _time = time ?? TimeProvider.System;
        _features = profile.Features.Select(f => new BinnedCounts(f)).ToArray();
        _prediction = new BinnedCounts(profile.Prediction);
        _windowStartMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
    }

    /// <summary>Called with each closed window's report (on the caller's thread).</summary>
    public event Action<DriftReport>? WindowClosed;

    public DriftReport? LastReport { get; private set; }
    public long WindowsClosed { get; private set; }
    /// <summary>Events observed since the monitor was made, over every window.</summary>
    public long Observed { get; private set; }
    /// <summary>Closed windows by their highest severity: [OK, WARN, ALERT].</summary>
    public long[] WindowsBySeverity { get; } = new long[3];

    /// <summary>Adds one scored event without its event time (the window is compared with the whole-day reference).</summary>
    public void Observe(ReadOnlySpan<float> features, long defaultedMask, double score) => Observe(features, defaultedMask, score, -1);

    /// <summary>
    /// Adds one scored event: its feature vector, which features were defaulted (bit mask), its primary score and its
    /// event time (Unix ms; negative when unknown), whose hour of day conditions the reference the window is judged against.
    /// </summary>
    public void Observe(ReadOnlySpan<float> features, long defaultedMask, double score, long eventTimeMs)
    {
        if (eventTimeMs >= 0)
        {
            _hours[(int)(eventTimeMs / 3_600_000 % 24)]++;
            if (eventTimeMs < _minEventMs) _minEventMs = eventTimeMs;
            if (eventTimeMs > _maxEventMs) _maxEventMs = eventTimeMs;
        }
        var all = _features;
        for (var f = 0; f < all.Length; f++)
        {
            all[f].Add(features[f]);
            if (f < 64 && (defaultedMask & (1L << f)) != 0) all[f].Missing++;
        }
        if (double.IsFinite(score)) _prediction.Add(score);
        _events++;
        Observed++;
        if (_settings.WindowSeconds <= 0 && _events >= _settings.WindowEvents) Close();
    }

    /// <summary>Adds every scored row of a batch, then closes a time window that has run its length.</summary>
    public void Observe(EventBatch batch, int scoreIndex)
    {
        for (var k = 0; k < batch.OkCount; k++)
            Observe(batch.FeatureRow(k), batch.DefaultedMasks[batch.Rows[k]], batch.ScoreRow(k)[scoreIndex], batch.EventTimesMs[batch.Rows[k]]);
        if (_settings.WindowSeconds > 0) CloseIfDue();
    }

    /// <summary>Closes a time window whose length has passed (call periodically when traffic may stop).</summary>
    public void CloseIfDue()
    {
        if (_settings.WindowSeconds > 0 && _time.GetUtcNow().ToUnixTimeMilliseconds() - _windowStartMs >= _settings.WindowSeconds * 1000) Close();
    }

    /// <summary>Closes the current window now: computes and publishes its report, starts the next.</summary>
    public DriftReport Close()
    {
        var end = _time.GetUtcNow().ToUnixTimeMilliseconds();
        // Count windows are judged when full; a small count window (WindowEvents < MinWindowEvents) still is.
        var judge = _events >= Math.Min(_settings.MinWindowEvents, _settings.WindowEvents);
        var report = new DriftReport(_profile.Model, _profile.ModelVersion, _profile.FeatureSet, _profile.FeatureSetVersion,
            _windowStartMs, end, _events,
            _features.Select(f => Evaluate(f, judge)).ToArray(), Evaluate(_prediction, judge)) { Sequence = WindowsClosed + 1 };
        foreach (var f in _features) f.Clear();
        _prediction.Clear();
        _events = 0;
        Array.Clear(_hours);
        (_minEventMs, _maxEventMs) = (long.MaxValue, long.MinValue);
        _windowStartMs = end;
        LastReport = report;
        WindowsClosed++;
        WindowsBySeverity[(int)report.MaxSeverity]++;
        WindowClosed?.Invoke(report);
        return report;
    }

    /// <summary>
    /// What this window's counts are compared with, and the reference size the tests assume. With per-hour shares in
    /// the profile and event times in the window: the mixture of the hours' shares weighted by the window's own hour
    /// mix (each hour shrunk toward the whole day by <see cref="DriftSettings.HourSmoothingRows"/>), and the effective
    /// size of that mixture, 1 / Σ w_h² / n_h. The hour-of-day feature is that mix itself: it is compared with the
    /// reference shares of the hours the window's event times cover, each weighted by how long it was covered (a
    /// window of three hours expects those three hours in their usual proportions). A day-of-week feature is judged
    /// only over windows spanning a week; null (not judged) otherwise. Without per-hour shares or event times: the
    /// whole-day shares and rows.
    /// </summary>
    public (double[]? Expected, long ReferenceRows) ReferenceFor(BinnedCounts c)
    {
        var reference = c.Reference;
        long timed = 0;
        foreach (var n in _hours) timed += n;
        if (reference.Clock == "dayOfWeek")
            return timed > 0 && _maxEventMs - _minEventMs < 7 * 86_400_000L ? (null, 0) : (c.Expected, reference.Count);
        if (reference.Clock == "hourOfDay")
            return timed > 0 ? (HourCoverage(c), reference.Count) : (c.Expected, reference.Count);
        if (timed == 0 || reference.HourCounts.Length != 24 || reference.HourBinShares.Length != 24) return (c.Expected, reference.Count);
        var mixture = c.Conditioned;
        Array.Clear(mixture);
        var k = Math.Max(0, _settings.HourSmoothingRows);
        var inverseSize = 0.0;
        for (var h = 0; h < 24; h++)
        {
            if (_hours[h] == 0) continue;
            var w = _hours[h] / (double)timed;
            var rows = reference.HourCounts[h];
            var shares = reference.HourBinShares[h];
            var bins = Math.Min(shares.Length, mixture.Length);
            var denominator = rows + k;
            if (denominator <= 0) return (c.Expected, reference.Count);   // an hour with no reference at all, no smoothing
            for (var b = 0; b < mixture.Length; b++)
                mixture[b] += w * ((b < bins ? rows * shares[b] : 0) + k * c.Expected[b]) / denominator;
            inverseSize += w * w / denominator;
        }
        return (mixture, inverseSize > 0 ? Math.Min(reference.Count, (long)(1 / inverseSize)) : reference.Count);
    }

    /// <summary>The hour-of-day categories' reference shares, each times the time the window's event-time span spent in that hour.</summary>
    private double[]? HourCoverage(BinnedCounts c)
    {
        Span<double> covered = stackalloc double[24];
        const long hour = 3_600_000, day = 24 * hour;
        var start = _minEventMs;
        var end = _maxEventMs + 1;
        var days = (end - start) / day;
        for (var h = 0; h < 24; h++) covered[h] = days * (double)hour;
        for (var t = start + days * day; t < end;)
        {
            var next = Math.Min(end, (t / hour + 1) * hour);
            covered[(int)(t / hour % 24)] += next - t;
            t = next;
        }
        var expected = c.Conditioned;
        Array.Clear(expected);
        var categories = c.Reference.Categories;
        var total = 0.0;
        for (var b = 0; b < categories.Length; b++)
        {
            var h = (int)categories[b];
            if (h < 0 || h > 23 || h != categories[b]) continue;
            expected[b] = c.Expected[b] * covered[h];
            total += expected[b];
        }
        if (!(total > 0)) return null;
        for (var b = 0; b < expected.Length; b++) expected[b] /= total;
        return expected;
    }

    /// <summary>Statistics of one feature's window against its reference, with severity and the thresholds it crossed.</summary>
    public FeatureDrift Evaluate(BinnedCounts c, bool judge = true)
    {
        var t = _settings;
        var reference = c.Reference;
        var missing = c.Total == 0 ? 0 : c.Missing / (double)c.Total;
        // No reference (an empty profile entry) means nothing to compare with.
        if (c.Total == 0 || !judge || reference.Count == 0)
            return new FeatureDrift(reference.Name, reference.Kind, c.Total, missing, reference.MissingRate,
                double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, DriftSeverity.Ok, []);
        var (expected, referenceRows) = ReferenceFor(c);
        if (expected is null)
            return new FeatureDrift(reference.Name, reference.Kind, c.Total, missing, reference.MissingRate,
                double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, DriftSeverity.Ok, []);
        var psi = DriftStatistics.Psi(expected, c.Counts);
        var js = DriftStatistics.JensenShannonDistance(expected, c.Counts);
        double ks = double.NaN, ksP = double.NaN, chi = double.NaN, chiP = double.NaN;
        if (c.IsCategorical)
            (chi, chiP, _) = DriftStatistics.ChiSquared(expected, Math.Max(1, referenceRows), c.Counts);
        else
        {
            ks = DriftStatistics.KsBinned(expected, c.Counts);
            ksP = DriftStatistics.KsPValue(ks, c.Total, Math.Max(1, referenceRows));
        }

        // A test alone is not enough at large windows (tiny but significant shifts): an alert needs the
        // test to reject at alpha and the shift to matter (PSI at least its warn level), or a distance
        // beyond its alert level on its own. Significance alone, or a distance past warn, is a warning.
        var breaches = new List<string>();
        var severity = DriftSeverity.Ok;
        void Raise(DriftSeverity level, string what)
        {
            if (level > severity) severity = level;
            if (!breaches.Contains(what)) breaches.Add(what);
        }
        var test = c.IsCategorical ? "chi_squared" : "ks";
        var significant = (c.IsCategorical ? chiP : ksP) < t.Alpha && psi >= t.PsiNegligible;
        if (significant) Raise(psi >= t.PsiWarn ? DriftSeverity.Alert : DriftSeverity.Warn, test);
        if (psi >= t.PsiAlert) Raise(DriftSeverity.Alert, "psi");
        else if (psi >= t.PsiWarn) Raise(significant ? DriftSeverity.Alert : DriftSeverity.Warn, "psi");
        if (js >= t.JsAlert) Raise(DriftSeverity.Alert, "js");
        else if (js >= t.JsWarn) Raise(DriftSeverity.Warn, "js");
        var missingShift = Math.Abs(missing - reference.MissingRate);
        if (missingShift >= t.MissingRateAlert) Raise(DriftSeverity.Alert, "missing_rate");
        else if (missingShift >= t.MissingRateWarn) Raise(DriftSeverity.Warn, "missing_rate");
        return new FeatureDrift(reference.Name, reference.Kind, c.Total, missing, reference.MissingRate, psi, ks, ksP, js, chi, chiP, severity, breaches);
    }
}
