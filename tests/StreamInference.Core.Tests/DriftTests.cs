using StreamInference.Batch.Profiling;
using StreamInference.Core.Drift;

namespace StreamInference.Core.Tests;

public class DriftTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void Psi_MatchesHandComputedValues()
    {
        Assert.Equal(0.1 * Math.Log(1.2) + 0.1 * Math.Log(1 / 0.8), DriftStatistics.Psi([0.5, 0.5], [60, 40]), 12);
        // An empty reference bin is floored at 1e-4.
        Assert.Equal(-0.5 * Math.Log(0.5) + (0.5 - 1e-4) * Math.Log(0.5 / 1e-4), DriftStatistics.Psi([1.0, 0.0], [50, 50]), 12);
        Assert.Equal(0, DriftStatistics.Psi([0.25, 0.75], [25, 75]), 12);
    }

    [Fact]
    public void JensenShannon_MatchesHandComputedValues()
    {
        Assert.Equal(0, DriftStatistics.JensenShannonDistance([0.3, 0.7], [30, 70]), 12);
        Assert.Equal(1, DriftStatistics.JensenShannonDistance([1.0, 0.0], [0, 10]), 12);
        // p = (½, ½), q = (1, 0), m = (¾, ¼).
        var divergence = 0.5 * (0.5 * Math.Log2(0.5 / 0.75) + 0.5 * Math.Log2(0.5 / 0.25)) + 0.5 * Math.Log2(1 / 0.75);
        Assert.Equal(Math.Sqrt(divergence), DriftStatistics.JensenShannonDistance([0.5, 0.5], [8, 0]), 12);
    }

    [Fact]
    public void ChiSquared_MatchesHandComputedTable_AndKnownQuantiles()
    {
        // Reference 100 rows split 50/50, live 30/70: expected cells 40/60 in both rows.
        var (statistic, p, dof) = DriftStatistics.ChiSquared([0.5, 0.5], 100, [30, 70]);
        Assert.Equal(2 * (100 / 40.0 + 100 / 60.0), statistic, 10);
        Assert.Equal(1, dof);
        Assert.Equal(0.003892, p, 5);
        Assert.Equal(0.05, DriftStatistics.ChiSquaredSurvival(3.841459, 1), 5);
        Assert.Equal(0.01, DriftStatistics.ChiSquaredSurvival(23.20925, 10), 5);
        Assert.Equal(Math.Exp(-3.7 / 2), DriftStatistics.ChiSquaredSurvival(3.7, 2), 10);   // χ²(2) is exponential
        Assert.Equal(0.5, DriftStatistics.ChiSquaredSurvival(29.33603, 30), 4);                // near the median
    }

    [Fact]
    public void KolmogorovDistribution_MatchesItsCriticalValues()
    {
        Assert.Equal(0.05, DriftStatistics.KolmogorovQ(1.3581), 3);
        Assert.Equal(0.01, DriftStatistics.KolmogorovQ(1.6276), 3);
        Assert.Equal(1.0, DriftStatistics.KolmogorovQ(0.1));
    }

    /// <summary>The binned KS statistic never exceeds the raw two-sample statistic, and falls short by at most one bin's share.</summary>
    [Theory]
    [InlineData(0.0, 1)]
    [InlineData(0.3, 2)]
    [InlineData(1.0, 3)]
    public void KsBinned_IsWithinTheBinBoundOfKsOnRawSamples(double shift, int seed)
    {
        var random = new Random(seed);
        var reference = Enumerable.Range(0, 5000).Select(_ => Normal(random)).ToArray();
        var live = Enumerable.Range(0, 2000).Select(_ => Normal(random) + shift).ToArray();
        var profile = ProfileBuilder.Describe("x", reference, categorical: false, missing: 0);
        var counts = new BinnedCounts(profile);
        foreach (var v in live) counts.Add(v);

        var binned = DriftStatistics.KsBinned(counts.Expected, counts.Counts);
        var raw = RawKs(reference, live);
        var widestBin = counts.Expected.Zip(counts.Counts, (p, c) => Math.Max(p, c / (double)live.Length)).Max();
        Assert.True(binned <= raw + 1e-12, $"binned {binned} > raw {raw}");
        Assert.True(raw - binned <= widestBin + 1e-12, $"raw {raw} − binned {binned} > {widestBin}");
    }

    /// <summary>Two-sample KS statistic from sorted samples, computed directly.</summary>
    private static double RawKs(double[] a, double[] b)
    {
        var x = a.Order().ToArray();
        var y = b.Order().ToArray();
        int i = 0, j = 0;
        var d = 0.0;
        while (i < x.Length && j < y.Length)
        {
            var v = Math.Min(x[i], y[j]);
            while (i < x.Length && x[i] <= v) i++;
            while (j < y.Length && y[j] <= v) j++;
            d = Math.Max(d, Math.Abs(i / (double)x.Length - j / (double)y.Length));
        }
        return d;
    }

    private static double Normal(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    private static readonly FeaturePlan TwoFeatures = FeatureSetLoader.Parse("""
        featureSet: drift
        version: 1
        event: { idField: id, entityKeyField: key, timeField: ts }
        features:
          - { name: x, event: x, default: 0 }
          - { name: channel, event: channel, transform: "index(A,B,C)", default: -1 }
        """);

    private static ReferenceProfile Reference(Random random)
    {
        var x = Enumerable.Range(0, 20_000).Select(_ => Normal(random)).ToArray();
        var channel = Enumerable.Range(0, 20_000).Select(_ => (double)Category(random, shifted: false)).ToArray();
        return new ReferenceProfile
        {
            FeatureSet = "drift", FeatureSetVersion = 1, Model = "m", ModelVersion = "1", Rows = 20_000,
            Features = [ProfileBuilder.Describe("x", x, false, 0), ProfileBuilder.Describe("channel", channel, true, 0)],
            Prediction = ProfileBuilder.Describe("prediction", x.Select(v => 1 / (1 + Math.Exp(-v))).ToArray(), false, 0),
        };
    }

    private static int Category(Random random, bool shifted)
    {
        var u = random.NextDouble();
        return shifted ? (u < 0.4 ? 0 : u < 0.8 ? 1 : 2) : (u < 0.6 ? 0 : u < 0.9 ? 1 : 2);
    }

    /// <summary>
    /// Acceptance: over 100 seeds, a 0.5 σ mean shift of x (and a shift of the channel mix) is flagged in
    /// the first full window after it in ≥ 95 seeds; on stationary data the share of windows flagged per
    /// feature stays at or below the configured level (alpha = 1 %).
    /// </summary>
    [Fact]
    public void Detection_PowerAndFalseAlarmRate_Over100Seeds()
    {
        const int window = 1000, stationaryWindows = 10;
        int detectedX = 0, detectedChannel = 0, falseAlarmsX = 0, falseAlarmsChannel = 0, windows = 0;
        var row = new float[2];
        for (var seed = 0; seed < 100; seed++)
        {
            var random = new Random(1000 + seed);
            var monitor = new DriftMonitor(Reference(random), TwoFeatures, new DriftSettings { Alpha = 0.01, WindowEvents = window });
            var reports = new List<DriftReport>();
            monitor.WindowClosed += reports.Add;
            var shiftAt = stationaryWindows * window + window / 2;   // mid-window: the next window is the first full one after it
            for (var i = 0; i < shiftAt + 2 * window; i++)
            {
                var shifted = i >= shiftAt;
                row[0] = (float)(Normal(random) + (shifted ? 0.5 : 0));
                row[1] = Category(random, shifted && i >= shiftAt);
                monitor.Observe(row, 0, 1 / (1 + Math.Exp(-row[0])));
            }
            for (var w = 0; w < stationaryWindows; w++)
            {
                windows++;
                if (reports[w].Features[0].Severity == DriftSeverity.Alert) falseAlarmsX++;
                if (reports[w].Features[1].Severity == DriftSeverity.Alert) falseAlarmsChannel++;
            }
            var firstFull = reports[stationaryWindows + 1];
            if (firstFull.Features[0].Severity == DriftSeverity.Alert) detectedX++;
            if (firstFull.Features[1].Severity == DriftSeverity.Alert) detectedChannel++;
        }
        output.WriteLine($"detected x {detectedX}/100, channel {detectedChannel}/100; false alarms x {falseAlarmsX}/{windows}, channel {falseAlarmsChannel}/{windows}");
        Assert.True(detectedX >= 95, $"x detected in {detectedX}/100");
        Assert.True(detectedChannel >= 95, $"channel detected in {detectedChannel}/100");
        Assert.True(falseAlarmsX <= 0.01 * windows, $"x: {falseAlarmsX} false alarms in {windows} windows");
        Assert.True(falseAlarmsChannel <= 0.01 * windows, $"channel: {falseAlarmsChannel} false alarms in {windows} windows");
    }

    [Fact]
    public void MissingRate_AndUnseenCategories_AreReported()
    {
        var random = new Random(4);
        var monitor = new DriftMonitor(Reference(random), TwoFeatures, new DriftSettings { WindowEvents = 500 });
        for (var i = 0; i < 500; i++)
            monitor.Observe([(float)Normal(random), i % 2 == 0 ? 7 : 0], defaultedMask: i % 4 == 0 ? 1 : 0, score: 0.5);
        var report = monitor.LastReport!;
        Assert.Equal(0.25, report.Features[0].MissingRate, 9);
        Assert.Contains("missing_rate", report.Features[0].Breaches);
        Assert.Equal(DriftSeverity.Alert, report.Features[1].Severity);   // half the values are a category never seen in training
        Assert.Contains("chi_squared", report.Features[1].Breaches);
        Assert.Equal(DriftSeverity.Alert, report.MaxSeverity);
    }

    [Fact]
    public void TimeWindows_CloseOnTime_AndSmallOnesAreNotJudged()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch + TimeSpan.FromDays(20_000));
        var random = new Random(8);
        var monitor = new DriftMonitor(Reference(random), TwoFeatures,
            new DriftSettings { WindowSeconds = 60, MinWindowEvents = 200 }, time: time);
        for (var i = 0; i < 100; i++) monitor.Observe([(float)(Normal(random) + 3), 2], 0, 0.5);   // few, but far off
        monitor.CloseIfDue();
        Assert.Equal(0, monitor.WindowsClosed);
        time.Advance(TimeSpan.FromSeconds(60));
        monitor.CloseIfDue();
        var small = monitor.LastReport!;
        Assert.Equal(1, small.Sequence);
        Assert.Equal(100, small.Events);
        Assert.Equal(DriftSeverity.Ok, small.Features[0].Severity);     // under MinWindowEvents: reported, not judged
        Assert.True(double.IsNaN(small.Features[0].Psi));

        for (var i = 0; i < 500; i++) monitor.Observe([(float)(Normal(random) + 3), 2], 0, 0.5);
        time.Advance(TimeSpan.FromSeconds(61));
        monitor.CloseIfDue();
        Assert.Equal(2, monitor.LastReport!.Sequence);
        Assert.Equal(DriftSeverity.Alert, monitor.LastReport.Features[0].Severity);
        time.Advance(TimeSpan.FromSeconds(60));
        monitor.CloseIfDue();                                             // no traffic: the window still closes, empty
        Assert.Equal(0, monitor.LastReport!.Events);
    }

    [Fact]
    public void Monitor_RefusesAProfileOfAnotherFeatureSet()
    {
        var profile = Reference(new Random(1));
        profile.FeatureSetVersion = 2;
        var e = Assert.Throws<InvalidDataException>(() => new DriftMonitor(profile, TwoFeatures));
        Assert.Contains("v2", e.Message);
    }

    private static readonly FeaturePlan ClockFeatures = FeatureSetLoader.Parse("""
        featureSet: clock
        version: 1
        event: { idField: id, entityKeyField: key, timeField: ts }
        features:
          - { name: spend, event: amount, default: 0 }
          - { name: hour, event: ts, transform: hour_of_day, default: 0 }
        """);

    private static readonly long Day0 = new DateTimeOffset(2026, 3, 2, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();

    /// <summary>Spend that follows the clock (higher in the evening), as card spend does: the mean is hour / 4.</summary>
    private static double Spend(Random random, int hour, double shift = 0) => hour / 4.0 + Normal(random) + shift;

    /// <summary>A reference over 30 days of traffic at every hour, with per-hour shares.</summary>
    private static ReferenceProfile ClockReference(Random random)
    {
        const int rows = 48_000;
        var times = Enumerable.Range(0, rows).Select(_ => Day0 + random.NextInt64(0, 30 * 86_400_000L)).ToArray();
        var spend = times.Select(t => Spend(random, (int)(t / 3_600_000 % 24))).ToArray();
        var hour = times.Select(t => (double)(t / 3_600_000 % 24)).ToArray();
        var profile = new ReferenceProfile
        {
            FeatureSet = "clock", FeatureSetVersion = 1, Model = "m", ModelVersion = "1", Rows = rows,
            Features = [ProfileBuilder.Describe("spend", spend, false, 0, times), ProfileBuilder.Describe("hour", hour, true, 0, times)],
            Prediction = ProfileBuilder.Describe("prediction", spend.Select(v => 1 / (1 + Math.Exp(-v))).ToArray(), false, 0, times),
        };
        profile.Features[1].Clock = "hourOfDay";
        return profile;
    }

    /// <summary>2,000 events between 20:00 and 22:00 of one day (optionally shifted), fed with or without their event times.</summary>
    private static DriftReport EveningWindow(ReferenceProfile profile, Random random, bool withTimes, double shift = 0, bool allAtEight = false)
    {
        var monitor = new DriftMonitor(profile, ClockFeatures, new DriftSettings { WindowEvents = 2_000 });
        DriftReport? report = null;
        monitor.WindowClosed += r => report = r;
        for (var i = 0; i < 2_000; i++)
        {
            var t = Day0 + 5 * 86_400_000L + 20 * 3_600_000L + (allAtEight ? random.NextInt64(0, 3_600_000) : random.NextInt64(0, 2 * 3_600_000));
            var h = (int)(t / 3_600_000 % 24);
            var spend = Spend(random, h, shift);
            monitor.Observe([(float)spend, h], 0, 1 / (1 + Math.Exp(-spend)), withTimes ? t : -1);
        }
        return report!;
    }

    /// <summary>
    /// A window of evening traffic is not drift: against the whole-day reference the clock-driven feature, the hour and
    /// the score all alert (the false alarm this conditioning removes); against the reference conditioned on the
    /// window's hours they are OK. A real shift in those hours is still an alert.
    /// </summary>
    [Fact]
    public void TimeOfDay_IsConditionedOn_TheWindowsOwnHours()
    {
        var random = new Random(4);
        var profile = ClockReference(random);

        var wholeDay = EveningWindow(profile, random, withTimes: false);
        Assert.Equal(DriftSeverity.Alert, wholeDay.Features[0].Severity);
        Assert.Equal(DriftSeverity.Alert, wholeDay.Features[1].Severity);
        Assert.Equal(DriftSeverity.Alert, wholeDay.Prediction.Severity);

        var conditioned = EveningWindow(profile, random, withTimes: true);
        Assert.All(conditioned.Features.Append(conditioned.Prediction), f => Assert.Equal(DriftSeverity.Ok, f.Severity));
        Assert.True(conditioned.Features[0].Psi < 0.02, $"spend PSI {conditioned.Features[0].Psi}");

        var shifted = EveningWindow(profile, random, withTimes: true, shift: 0.5);
        Assert.Equal(DriftSeverity.Alert, shifted.Features[0].Severity);
        Assert.Equal(DriftSeverity.Alert, shifted.Prediction.Severity);
        Assert.Equal(DriftSeverity.Ok, shifted.Features[1].Severity);   // the hours are as usual

        // The same two hours, but every event in the first: the hour mix itself moved.
        var lopsided = EveningWindow(profile, random, withTimes: true, allAtEight: true);
        Assert.Equal(DriftSeverity.Ok, lopsided.Features[0].Severity);
        Assert.Equal(DriftSeverity.Ok, lopsided.Features[1].Severity);   // one hour covered, one hour seen: as expected
    }

    /// <summary>
    /// A count that is 0 for most rows collapses quantile edges into one bin, where a shift is invisible (PSI 0). Value
    /// bins give 0, 1 and 2+ their own bins: the same shift (mean 0.001 live against 0.045 in training) is caught.
    /// </summary>
    [Fact]
    public void SparseCounts_GetValueBins_AndAShiftBetweenTheirMassesIsDetected()
    {
        var random = new Random(8);
        static double Count(Random r, double rate) => r.NextDouble() < rate ? (r.NextDouble() < 0.93 ? 1 : 2) : 0;
        var training = Enumerable.Range(0, 50_000).Select(_ => Count(random, 0.043)).ToArray();
        var d = ProfileBuilder.Describe("card_txn_count_1h", training, categorical: false, missing: 0);
        Assert.Equal("continuous", d.Kind);
        Assert.Equal("value", d.Binning);
        Assert.Equal([1.0, 2.0], d.BinEdges);

        var live = new BinnedCounts(d);
        for (var i = 0; i < 2_000; i++) live.Add(Count(random, 0.001));
        var psi = DriftStatistics.Psi(live.Expected, live.Counts);
        var ks = DriftStatistics.KsBinned(live.Expected, live.Counts);
        Assert.True(psi > DriftSettingsDefaults.PsiWarn, $"PSI {psi}");
        Assert.True(DriftStatistics.KsPValue(ks, 2_000, 50_000) < 0.01);

        var same = new BinnedCounts(d);
        for (var i = 0; i < 2_000; i++) same.Add(Count(random, 0.043));
        Assert.True(DriftStatistics.Psi(same.Expected, same.Counts) < 0.02);
    }

    private static readonly DriftSettings DriftSettingsDefaults = new();
}
