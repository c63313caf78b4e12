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
}
