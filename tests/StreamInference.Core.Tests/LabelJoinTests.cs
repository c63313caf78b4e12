using StreamInference.Core.Evaluation;

namespace StreamInference.Core.Tests;

/// <summary>
/// The label join on scripted streams (issue 19, acceptance 2): on-time, early, late, duplicate and orphan labels and
/// redelivered predictions, each counted exactly; every model's prediction of a labelled event is emitted once.
/// </summary>
public sealed class LabelJoinTests
{
    private const long Day = 86_400_000;
    private const long Horizon = 2 * Day;

    private static ScoredEvent P(string id, string model, long eventTime, double score = 0.5) => new(id, "card-" + id, model, "champion", score, eventTime, 1);
    private static GroundTruth L(string id, bool label, long labelTime, long? eventTime = null) => new(id, "card-" + id, label, labelTime, eventTime);

    [Fact]
    public void AScriptedStream_IsCountedExactly()
    {
        var join = new LabelJoin(Horizon);
        var emitted = new List<LabelledPrediction>();
        void Add(IReadOnlyList<LabelledPrediction> x) => emitted.AddRange(x);

        // e1: champion and shadow predicted, labelled a day later: both emitted.
        Add(join.OnPrediction(P("e1", "gbm@1", 0)));
        Add(join.OnPrediction(P("e1", "logreg@3", 0)));
        // e2: predicted twice by the champion (a redelivery), then labelled twice.
        Add(join.OnPrediction(P("e2", "gbm@1", 10)));
        Add(join.OnPrediction(P("e2", "gbm@1", 10)));
        // e3: the label comes first (early), then the prediction.
        Add(join.OnLabel(L("e3", true, 20, eventTime: 15)));
        Add(join.OnPrediction(P("e3", "gbm@1", 15)));
        // e4: a label for an event never predicted (dead-lettered, or no such event): an orphan once its horizon passes.
        Add(join.OnLabel(L("e4", false, 30, eventTime: 25)));
        // e5: predicted, never labelled.
        Add(join.OnPrediction(P("e5", "gbm@1", 40)));

        Add(join.OnLabel(L("e1", true, Day)));
        Add(join.OnLabel(L("e2", false, Day + 1)));
        Add(join.OnLabel(L("e2", true, Day + 2)));        // duplicate: the first label stands
        // e6: predicted at 0 + 50, labelled after its horizon: late (its predictions are gone, counted unlabelled).
        Add(join.OnPrediction(P("e6", "gbm@1", 50)));
        join.Advance(3 * Day);
        Add(join.OnLabel(L("e6", true, 3 * Day, eventTime: 50)));
        // A prediction arriving past its own horizon cannot be labelled any more.
        Add(join.OnPrediction(P("e7", "gbm@1", 60)));

        var c = join.Counts;
        Assert.Equal(3, c.Joined);                // e1, e2, e3
        Assert.Equal(2, c.Early);                 // e3, e4
        Assert.Equal(1, c.Orphans);               // e4
        Assert.Equal(1, c.Late);                  // e6
        Assert.Equal(1, c.DuplicateLabels);       // e2's second label
        Assert.Equal(1, c.DuplicatePredictions);  // e2's redelivery
        Assert.Equal(3, c.Unlabelled);            // e5, e6, e7
        Assert.Equal(4, c.Emitted);               // e1 × 2 models, e2, e3
        Assert.Equal(emitted.Count, c.Emitted);
        Assert.Equal(0, join.Pending);            // the horizon passed for everything
        Assert.Equal(
            [("e3", "gbm@1", true), ("e1", "gbm@1", true), ("e1", "logreg@3", true), ("e2", "gbm@1", false)],   // in the order completed
            emitted.Select(e => (e.Prediction.EventId, e.Prediction.Model, e.Label)));
    }

    /// <summary>The clock is the prediction stream's: a label stamped far in the future expires nothing.</summary>
    [Fact]
    public void ALabelFromTheFuture_DoesNotExpireOtherPredictions()
    {
        var join = new LabelJoin(Horizon);
        join.OnPrediction(P("a", "gbm@1", 0));
        join.OnLabel(L("b", true, 30 * Day, eventTime: 29 * Day));   // early, its event far ahead
        Assert.Equal(0, join.NowMs);
        Assert.Single(join.OnLabel(L("a", false, Day)));
        Assert.Equal(0, join.Counts.Unlabelled);
    }

    /// <summary>A random mix over 20,000 events: the counts add up to what was sent, whatever the order.</summary>
    [Fact]
    public void RandomStreams_CountEveryLabelAndPredictionOnce()
    {
        var random = new Random(19);
        var join = new LabelJoin(Horizon);
        var labels = 0;
        var predictions = 0;
        var events = new List<(string Kind, long At, Action Act)>();
        for (var i = 0; i < 20_000; i++)
        {
            var id = $"e{i}";
            var eventTime = (long)i * 10_000;
            var predicted = random.NextDouble() < 0.97;   // 3 % dead-lettered: their labels are orphans
            if (predicted)
            {
                var p = P(id, "gbm@1", eventTime);
                events.Add(("p", eventTime + random.Next(0, 5_000), () => { predictions++; join.OnPrediction(p); }));
                if (random.NextDouble() < 0.02) events.Add(("p", eventTime + random.Next(0, 60_000), () => { predictions++; join.OnPrediction(p); }));
            }
            var r = random.NextDouble();
            if (r < 0.1) continue;                                                   // never labelled
            var delay = r < 0.15 ? -random.Next(1, 4_000) : r < 0.2 ? 3 * Day : random.Next(0, (int)Day);   // early, late, on time
            var l = L(id, random.NextDouble() < 0.05, eventTime + Math.Max(0, delay), eventTime);
            events.Add(("l", eventTime + delay, () => { labels++; join.OnLabel(l); }));
            if (random.NextDouble() < 0.01) events.Add(("l", eventTime + delay + 1, () => { labels++; join.OnLabel(l); }));
        }
        foreach (var e in events.OrderBy(e => e.At)) e.Act();
        join.Advance(long.MaxValue);

        var c = join.Counts;
        Assert.Equal(labels, c.Joined - (c.Early - c.Orphans) + c.Early + c.Late + c.DuplicateLabels);
        Assert.Equal(predictions, c.Emitted + c.Unlabelled + c.DuplicatePredictions);
        Assert.Equal(0, join.Pending);
        Assert.True(c.Late > 0 && c.Orphans > 0 && c.DuplicateLabels > 0 && c.DuplicatePredictions > 0 && c.Early > c.Orphans, c.ToString());
    }

    /// <summary>
    /// Event-time windows from the join's output: each closed window's metrics equal those computed directly on the
    /// labelled predictions of its events, its coverage is labelled ÷ predicted, and label-arrival windows hold N each.
    /// </summary>
    [Fact]
    public void EvaluationWindows_EqualDirectComputation_PerModelAndWindow()
    {
        const long Hour = 3_600_000;
        var random = new Random(7);
        var join = new LabelJoin(Horizon);
        var windows = new EvaluationWindows(windowMs: Hour, horizonMs: Horizon, arrivalEvents: 500);
        var reports = new List<EvaluationReport>();
        windows.Closed += reports.Add;
        var labelled = new List<LabelledPrediction>();
        var predicted = new List<ScoredEvent>();
        var pending = new PriorityQueue<GroundTruth, long>();
        for (var i = 0; i < 6_000; i++)
        {
            var t = (long)i * 6_000;   // 10 events a minute, 10 hours
            var y = random.NextDouble() < 0.2;
            foreach (var model in new[] { "gbm@1", "logreg@3" })
            {
                var p = new ScoredEvent($"e{i}", "c", model, "champion", Math.Clamp((y ? 0.3 : 0) + random.NextDouble() * 0.7, 0, 1), t, 1);
                predicted.Add(p);
                windows.OnPredicted(model, "champion", t);
                foreach (var x in join.OnPrediction(p)) { labelled.Add(x); windows.OnLabelled(x); }
            }
            if (random.NextDouble() < 0.9) pending.Enqueue(L($"e{i}", y, t + random.Next(0, (int)(3 * Hour)), t), t + random.Next(0, (int)(3 * Hour)));
            while (pending.TryPeek(out var l, out var at) && at <= t)
            {
                pending.Dequeue();
                foreach (var x in join.OnLabel(l)) { labelled.Add(x); windows.OnLabelled(x); }
            }
            windows.Advance(join.NowMs);
        }
        while (pending.TryDequeue(out var l, out _))
            foreach (var x in join.OnLabel(l)) { labelled.Add(x); windows.OnLabelled(x); }
        join.Advance(long.MaxValue);
        windows.Advance(long.MaxValue);

        var eventTime = reports.Where(r => r.Kind == EvaluationWindowKind.EventTime).ToList();
        Assert.Equal(2 * 10, eventTime.Count);   // 10 hours × 2 models
        foreach (var r in eventTime)
        {
            var mine = labelled.Where(x => x.Prediction.Model == r.Model && x.Prediction.EventTimeMs >= r.StartMs && x.Prediction.EventTimeMs < r.EndMs).ToList();
            var direct = BinaryEvaluation.Compute(mine.Select(x => x.Prediction.Score).ToArray(), mine.Select(x => x.Label).ToArray());
            Assert.Equal(direct.Auc, r.Metrics.Auc, 1e-12);
            Assert.Equal(direct.Brier, r.Metrics.Brier, 1e-12);
            Assert.Equal(mine.Count, r.Metrics.Count);
            Assert.Equal(predicted.Count(p => p.Model == r.Model && p.EventTimeMs >= r.StartMs && p.EventTimeMs < r.EndMs), r.Predicted);
            Assert.InRange(r.LabelCoverage, 0.8, 1.0);
        }
        var arrival = reports.Where(r => r.Kind == EvaluationWindowKind.LabelArrival).ToList();
        Assert.All(arrival, r => Assert.Equal(500, r.Metrics.Count));
        foreach (var model in new[] { "gbm@1", "logreg@3" })
            Assert.Equal(labelled.Count(x => x.Prediction.Model == model) / 500, arrival.Count(r => r.Model == model));
    }
}
