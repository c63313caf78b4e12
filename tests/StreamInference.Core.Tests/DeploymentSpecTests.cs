using Microsoft.Extensions.Time.Testing;
using StreamInference.Core.Deployment;

namespace StreamInference.Core.Tests;

/// <summary>The deployment file, the sticky entity sampler behind canary and shadow sampling, and the fallback tier's switching.</summary>
public sealed class DeploymentSpecTests
{
    private const string Full = """
        version: 3
        champion: fraud-gbm@1
        shadows:
          - model: fraud-logreg@3
          - model: fraud-rules@1
            sample: 0.25
        canary:
          model: fraud-mlp@1
          share: 0.1
          salt: rollout-2026-12
        fallback:
          model: fraud-logreg@3
          enterLagEvents: 50000
          enterEventAgeMs: 2000
          exitEventAgeMs: 500
          minDwellMs: 30000
          onError: true
        """;

    [Fact]
    public void Parse_ReadsEveryRole_WithDefaults()
    {
        var d = DeploymentSpec.Parse(Full);
        Assert.Equal(3, d.Version);
        Assert.Equal(new ModelRef("fraud-gbm", "1"), d.Champion);
        Assert.Equal([new ShadowSpec(new ModelRef("fraud-logreg", "3"), 1.0), new ShadowSpec(new ModelRef("fraud-rules", "1"), 0.25)], d.Shadows);
        Assert.Equal(new CanarySpec(new ModelRef("fraud-mlp", "1"), 0.1, "rollout-2026-12"), d.Canary);
        Assert.Equal(new FallbackSpec(new ModelRef("fraud-logreg", "3"), 50_000, 25_000, 2_000, 500, 30_000, true), d.Fallback);   // exitLag defaults to half
        // Every model once, the champion first: the fallback is also a shadow and is loaded once.
        Assert.Equal(["fraud-gbm@1", "fraud-logreg@3", "fraud-rules@1", "fraud-mlp@1"], d.Models.Select(m => m.ToString()));
    }

    [Theory]
    [InlineData("champion: fraud-gbm@1", "version must be")]
    [InlineData("version: 1", "champion (name@version) is required")]
    [InlineData("version: 1\nchampion: fraud-gbm", "must be name@version")]
    [InlineData("version: 1\nchampion: fraud-gbm@latest", "'latest' is not allowed")]
    [InlineData("version: 1\nchampion: a@1\ncanary: { model: a@1, share: 0.1, salt: s }", "is the champion")]
    [InlineData("version: 1\nchampion: a@1\ncanary: { model: b@1, share: 1.5, salt: s }", "canary.share must be in (0, 1)")]
    [InlineData("version: 1\nchampion: a@1\ncanary: { model: b@1, share: 0.1 }", "canary.salt is required")]
    [InlineData("version: 1\nchampion: a@1\nshadows: [ { model: b@1, sample: 0 } ]", "shadows[0].sample 0 must be in (0, 1]")]
    [InlineData("version: 1\nchampion: a@1\nshadows: [ { model: b@1 }, { model: b@1 } ]", "listed twice")]
    [InlineData("version: 1\nchampion: a@1\nfallback: { model: b@1 }", "fallback needs a trigger")]
    [InlineData("version: 1\nchampion: a@1\nfallback: { model: b@1, enterLagEvents: 100, exitLagEvents: 100 }", "must be below fallback.enterLagEvents")]
    [InlineData("version: 1\nchampion: a@1\nfallback: { model: b@1, exitEventAgeMs: 100, onError: true }", "without fallback.enterEventAgeMs")]
    public void Parse_RefusesWhatCannotBeServed_InOneLineNamingTheKey(string yaml, string expected)
    {
        var e = Assert.Throws<DeploymentException>(() => DeploymentSpec.Parse(yaml, "models/deployment.yaml"));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("models/deployment.yaml", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Parse_RefusesUnknownKeys_WithTheirLine()
    {
        var e = Assert.Throws<DeploymentException>(() => DeploymentSpec.Parse("version: 1\nchampion: a@1\ncanery:\n  model: b@1\n", "d.yaml"));
        Assert.StartsWith("d.yaml:3:", e.Message);
        Assert.Contains("canery", e.Message);
    }

    /// <summary>10 % of 100,000 entities: the share lands within the 99 % binomial interval, and the same entities every time.</summary>
    [Fact]
    public void Sampler_HitsTheShare_WithinTheBinomialInterval_AndIsSticky()
    {
        const int n = 100_000;
        const double share = 0.1;
        var keys = Enumerable.Range(0, n).Select(i => $"card-{i:D6}").ToArray();
        var sampler = new EntitySampler("rollout-2026-12", share);
        var chosen = keys.Where(sampler.Contains).ToHashSet();
        var half = 2.5758 * Math.Sqrt(n * share * (1 - share));   // z(0.995) × σ
        Assert.InRange(chosen.Count, n * share - half, n * share + half);

        // A new instance (a restart, another group member, a replay) chooses the same entities.
        var again = new EntitySampler("rollout-2026-12", share);
        Assert.True(keys.All(k => again.Contains(k) == chosen.Contains(k)));
        // The UTF-8 span and the string overloads agree.
        Assert.True(keys.Take(1000).All(k => again.Contains(System.Text.Encoding.UTF8.GetBytes(k)) == chosen.Contains(k)));

        // Another salt draws another set: about share² of the entities are in both.
        var other = keys.Where(new EntitySampler("rollout-2027-01", share).Contains).ToHashSet();
        var overlap = chosen.Intersect(other).Count();
        Assert.InRange(overlap, n * share * share * 0.7, n * share * share * 1.3);

        // A larger share keeps the entities of the smaller one (ramping 10 % → 25 % only adds entities).
        var wider = new EntitySampler("rollout-2026-12", 0.25);
        Assert.True(chosen.All(wider.Contains));
    }

    private static readonly FallbackSpec Fallback = new(new ModelRef("fraud-logreg", "3"), 50_000, 10_000, 2_000, 500, 30_000, OnError: true);

    [Fact]
    public void Fallback_TakesOverOnLagOrAge_AndHandsBackBelowTheExitBudgets()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-12-01T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var c = new FallbackController(Fallback, time);
        var switches = new List<TierSwitch>();
        c.Switched += switches.Add;

        Assert.Equal(ServingTier.Champion, c.Observe(40_000, 1_500));        // within both budgets
        Assert.Equal(ServingTier.Fallback, c.Observe(60_000, 100));          // lag over: switch at once
        Assert.Contains("consumer lag 60000 events over the budget of 50000", switches[^1].Reason);

        time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(ServingTier.Fallback, c.Observe(20_000, 100));          // between exit and enter: stays (hysteresis)
        Assert.Equal(ServingTier.Champion, c.Observe(5_000, 100));           // below both exit budgets: back
        time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(ServingTier.Fallback, c.Observe(0, 2_500));             // event age over
        Assert.Contains("event age 2500 ms", switches[^1].Reason);
        Assert.Equal(3, c.Switches);
        Assert.Equal([ServingTier.Fallback, ServingTier.Champion, ServingTier.Fallback], switches.Select(s => s.To));
    }

    /// <summary>
    /// A lag signal that swings across both budgets every second for ten minutes: the minimum dwell bounds the
    /// switches at one per dwell (600 s / 30 s = 20), where an undamped rule would switch every second.
    /// </summary>
    [Fact]
    public void Fallback_MinimumDwell_BoundsTheFlips()
    {
        var time = new FakeTimeProvider();
        var c = new FallbackController(Fallback, time);
        for (var s = 0; s < 600; s++)
        {
            c.Observe(s % 2 == 0 ? 80_000 : 1_000, null);
            time.Advance(TimeSpan.FromSeconds(1));
        }
        Assert.InRange(c.Switches, 19, 20);

        var undamped = new FallbackController(Fallback with { MinDwellMs = 0 }, new FakeTimeProvider());
        for (var s = 0; s < 600; s++) undamped.Observe(s % 2 == 0 ? 80_000 : 1_000, null);
        Assert.Equal(600, undamped.Switches);
    }

    /// <summary>
    /// A spike that outlasts the dwell: the backlog is drained (lag under the exit budget), but records still arrive
    /// faster than the champion scores them, so handing back would only rebuild the lag. The tier stays until the
    /// input rate is within 80 % of the champion's throughput.
    /// </summary>
    [Fact]
    public void Fallback_HandsBackOnlyWhenTheChampionCanKeepUp()
    {
        var time = new FakeTimeProvider();
        var c = new FallbackController(Fallback, time);
        var switches = new List<TierSwitch>();
        c.Switched += switches.Add;
        Assert.Equal(ServingTier.Fallback, c.Observe(60_000, null, inputRate: 20_000, championRate: 10_000));
        time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(ServingTier.Fallback, c.Observe(1_000, 100, inputRate: 20_000, championRate: 10_000));   // drained, still spiking
        // One quiet measurement within the input-rate window of a spiking one: the spike's rate is judged.
        time.Advance(FallbackController.InputRateWindow / 2);
        Assert.Equal(ServingTier.Fallback, c.Observe(1_000, 100, inputRate: 500, championRate: 10_000));
        time.Advance(FallbackController.InputRateWindow);
        Assert.Equal(ServingTier.Fallback, c.Observe(1_000, 100, inputRate: 8_500, championRate: 10_000));    // within capacity, not within headroom
        time.Advance(FallbackController.InputRateWindow + TimeSpan.FromMilliseconds(1));
        Assert.Equal(ServingTier.Champion, c.Observe(1_000, 100, inputRate: 4_000, championRate: 10_000));
        Assert.Equal(2, switches.Count);
        Assert.Contains("input 4000/s within the champion's 10000/s", switches[^1].Reason);
        var back = new FallbackController(Fallback, time);
        back.Observe(60_000, null);
        time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(ServingTier.Champion, back.Observe(1_000, 100));   // rates unknown: the budgets alone decide
    }

    [Fact]
    public void ToYaml_ReadsBackAsTheSameDeployment()
    {
        var d = DeploymentSpec.Parse(Full);
        var again = DeploymentSpec.Parse(d.ToYaml());
        Assert.Equal(d.Version, again.Version);
        Assert.Equal(d.Champion, again.Champion);
        Assert.Equal(d.Shadows, again.Shadows);
        Assert.Equal(d.Canary, again.Canary);
        Assert.Equal(d.Fallback, again.Fallback);
    }

    [Fact]
    public void Promote_MakesTheChallengerChampion_RaisesTheVersion_AndRollbackUndoesIt()
    {
        var d = DeploymentSpec.Parse(Full);
        var promoted = d.Promote(new ModelRef("fraud-mlp", "1"));
        Assert.Equal(4, promoted.Version);
        Assert.Equal(new ModelRef("fraud-mlp", "1"), promoted.Champion);
        Assert.Equal(new ModelRef("fraud-gbm", "1"), promoted.Previous);
        Assert.Null(promoted.Canary);                          // the canary left its role
        Assert.Equal(d.Shadows, promoted.Shadows);
        Assert.Equal(d.Fallback, promoted.Fallback);

        var back = DeploymentSpec.Parse(promoted.ToYaml()).Rollback();
        Assert.Equal(5, back.Version);                          // versions only go up: every member applies it
        Assert.Equal(new ModelRef("fraud-gbm", "1"), back.Champion);
        Assert.Equal(new ModelRef("fraud-mlp", "1"), back.Previous);   // a second rollback undoes the first

        var e = Assert.Throws<DeploymentException>(() => d.Promote(new ModelRef("fraud-gbm", "1")));
        Assert.Contains("already the champion", e.Message);
        e = Assert.Throws<DeploymentException>(() => d.Rollback());
        Assert.Contains("no previous champion", e.Message);
        e = Assert.Throws<DeploymentException>(() => d.Promote(new ModelRef("fraud-logreg", "3")));
        Assert.Contains("fallback tier", e.Message);
    }

    [Fact]
    public void ACanaryThatIsAlsoAShadow_IsRefused()
    {
        var e = Assert.Throws<DeploymentException>(() => DeploymentSpec.Parse("version: 1\nchampion: a@1\ncanary: { model: b@1, share: 0.1, salt: s }\nshadows: [ { model: b@1 } ]"));
        Assert.Contains("both the canary and a shadow", e.Message);
    }
}

/// <summary>The live champion/challenger comparison's statistics, on pairs whose answers are known.</summary>
public sealed class ModelComparisonTests
{
    [Fact]
    public void IdenticalModels_AgreeEverywhere()
    {
        var c = new ModelComparison("fraud-gbm@1", "fraud-gbm@2", windowEvents: 100);
        var random = new Random(1);
        for (var i = 0; i < 100; i++)
        {
            var s = random.NextDouble();
            c.Observe(s, s);
        }
        var r = c.LastReport!;
        Assert.Equal((100, 1.0, 0.0, 0.0, 1.0), (r.Events, r.Agreement, r.AbsDifferenceP99, r.MeanDifference, r.RankCorrelation));
        Assert.Equal(100, r.BothPositive + r.BothNegative);
    }

    /// <summary>A monotone recalibration ranks alike (Spearman 1) while its scores and decisions move; a reversed model ranks opposite (−1).</summary>
    [Fact]
    public void RankCorrelation_SeesOrder_DifferencesSeeScale()
    {
        var squared = new ModelComparison("a@1", "b@1", windowEvents: 1000);
        var reversed = new ModelComparison("a@1", "c@1", windowEvents: 1000);
        for (var i = 0; i < 1000; i++)
        {
            var s = (i + 0.5) / 1000;
            squared.Observe(s, s * s);
            reversed.Observe(s, 1 - s);
        }
        var sq = squared.LastReport!;
        Assert.Equal(1.0, sq.RankCorrelation, 12);
        // s > 0.5 but s² <= 0.5 for s in (0.5, 0.7071]: 207 of 1,000 events flip to negative.
        Assert.Equal((293, 207, 0, 500), (sq.BothPositive, sq.ChampionOnly, sq.ChallengerOnly, sq.BothNegative));
        Assert.Equal(0.793, sq.Agreement, 3);
        Assert.Equal(-1.0 / 6, sq.MeanDifference, 3);                 // ∫(s² − s) ds over [0, 1]
        Assert.Equal(0.25, sq.AbsDifferenceP99, 2);                   // s − s² peaks at 1/4
        Assert.Equal(-1.0, reversed.LastReport!.RankCorrelation, 12);
        Assert.Equal(0.0, reversed.LastReport!.Agreement);
    }

    [Fact]
    public void Ties_TakeTheirAverageRank_AndAConstantModelHasNoRankCorrelation()
    {
        Assert.Equal(1.0, ModelComparison.Spearman([1, 1, 2, 3], [5, 5, 6, 7]), 12);
        Assert.True(double.IsNaN(ModelComparison.Spearman([1, 2, 3], [4, 4, 4])));
        Assert.Equal(2.5, ModelComparison.Quantile([1, 2, 3, 4], 0.5));
    }

    [Fact]
    public void Windows_CloseEveryNPairs_SkipNonFinite_AndReportCostPerRow()
    {
        var c = new ModelComparison("a@1", "b@1", windowEvents: 10);
        var reports = new List<ComparisonReport>();
        c.WindowClosed += reports.Add;
        c.ObserveCost(challenger: false, rows: 10, TimeSpan.FromMilliseconds(1));
        c.ObserveCost(challenger: true, rows: 10, TimeSpan.FromMilliseconds(5));
        for (var i = 0; i < 25; i++) c.Observe(0.1 * (i % 10), i == 3 ? double.NaN : 0.1 * (i % 10));
        Assert.Equal([1L, 2L], reports.Select(r => r.Sequence));
        Assert.Equal((100.0, 500.0), (reports[0].ChampionMicrosPerRow, reports[0].ChallengerMicrosPerRow));
        Assert.True(double.IsNaN(reports[1].ChampionMicrosPerRow));   // no scoring observed in the second window
        Assert.Equal(4, c.Close()!.Events);                             // 24 finite pairs: 10 + 10 + 4
        Assert.Null(c.Close());
    }
}
