using StreamInference.Batch.Features;
using StreamInference.Batch.History;
using StreamInference.Batch.Synthetic;
using StreamInference.Core.Features.Windows;

namespace StreamInference.Core.Tests;

public class WindowAndPointInTimeTests
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 2, 10, 0, 0, TimeSpan.Zero);
    private static long At(int minutes, int seconds = 0) => (T0 + TimeSpan.FromMinutes(minutes) + TimeSpan.FromSeconds(seconds)).ToUnixTimeMilliseconds();

    private static readonly FeaturePlan Plan = FeatureSetLoader.Parse("""
        featureSet: windows
        version: 1
        event: { idField: id, entityKeyField: user, timeField: ts, allowedLateness: 2m }
        features:
          - { name: count_10m, window: { function: count, size: 10m, bucket: 1m }, default: 0 }
          - { name: sum_30m, window: { function: sum, of: amount, size: 30m, bucket: 5m }, default: 0 }
          - { name: mean_1h, window: { function: mean, of: amount, size: 1h, bucket: 5m }, default: -1 }
          - { name: min_15m, window: { function: min, of: amount, size: 15m, bucket: 1m }, default: -1 }
          - { name: max_2h, window: { function: max, of: amount, size: 2h, bucket: 10m }, default: -1 }
          - { name: amount, event: amount, default: 0 }
        """);

    [Fact]
    public void Window_CoversWholeBucketsEndingAtLeastTheLatenessBeforeTheEvent()
    {
        var engine = new WindowEngine(Plan);
        var state = engine.NewState();
        var numerics = new double[Plan.NumericFields.Count];
        var amount = Plan.NumericSlot("amount");
        foreach (var (t, a) in new[] { (At(0, 30), 1.0), (At(5, 10), 2.0), (At(8, 59), 4.0), (At(9, 0), 8.0), (At(10, 0), 16.0) })
        {
            numerics[amount] = a;
            engine.Add(state, t, numerics);
        }
        var aggregates = new double[Plan.WindowCount];

        // At 12:00 with 2m lateness the 10m window is the buckets [00:00, 10:00): 00:30 … 09:00, not 10:00.
        engine.Read(state, state.Watermark, At(12), aggregates);
        Assert.Equal(4, aggregates[0]);
        Assert.Equal(1 + 2 + 4 + 8, aggregates[1]);     // 5m buckets [-20m, 10m)
        Assert.Equal(15 / 4.0, aggregates[2]);
        Assert.Equal(1, aggregates[3]);
        Assert.Equal(8, aggregates[4]);                  // 10m buckets: bucket [T0, T0+10m) holds all but the 10:00 event

        // One millisecond earlier, the window ends at 09:00: 09:00 drops out.
        engine.Read(state, state.Watermark, At(12) - 1, aggregates);
        Assert.Equal(3, aggregates[0]);
        Assert.True(double.IsNaN(aggregates[4]));       // the 10m-bucket window now ends at T0: empty, so the default applies
    }

    [Fact]
    public void LateEvents_AreNotAdded()
    {
        var engine = new WindowEngine(Plan);
        var state = engine.NewState();
        var numerics = new double[Plan.NumericFields.Count];
        engine.Add(state, At(30), numerics);
        Assert.False(engine.IsLate(state.Watermark, At(28)));     // exactly the lateness behind: on time
        Assert.True(engine.IsLate(state.Watermark, At(28) - 1));
        Assert.False(engine.IsLate(EntityWindowState.NoWatermark, At(0)));
    }

    /// <summary>
    /// The windows' central property: replaying events in arrival order (as the stream does, deleting
    /// old buckets as it goes) and computing them in event-time order (as the batch path does) give the
    /// same vectors, with out-of-order and late arrivals.
    /// </summary>
    [Fact]
    public void ArrivalOrderReplay_AndEventTimeOrderBatch_GiveIdenticalVectors()
    {
        var random = new Random(5);
        var events = new List<(string User, long Time, double Amount, long Arrival)>();
        for (var i = 0; i < 4000; i++)
        {
            var t = At(0) + (long)(random.NextDouble() * 6 * 3_600_000);
            var u = random.NextDouble();
            var delay = u < 0.02 ? random.Next(150_000, 600_000) : u < 0.12 ? random.Next(1_000, 120_000) : random.Next(0, 500);
            events.Add(($"u{random.Next(15)}", t, Math.Round(random.NextDouble() * 100, 2), t + delay));
        }
        events.Sort((a, b) => a.Arrival.CompareTo(b.Arrival));

        var history = new EventHistory(Plan);
        var numerics = new double[Plan.NumericFields.Count];
        var texts = new string?[Plan.TextFields.Count];
        foreach (var (user, time, amount, _) in events)
        {
            numerics[Plan.NumericSlot("amount")] = random.NextDouble() < 0.05 ? double.NaN : amount;
            texts[Plan.EntityKeySlot] = user;
            history.Add(Guid.NewGuid().ToString(), time, numerics, texts, double.NaN, []);
        }

        var batch = PointInTimeFeatures.Compute(history, new LookupTimeline(Plan));

        // Arrival-order replay, as RedisFeatureStore does over the state it reads from Redis.
        var engine = new WindowEngine(Plan);
        var assembler = new FeatureVectorAssembler(Plan);
        var states = new Dictionary<string, EntityWindowState>();
        var aggregates = new double[Plan.WindowCount];
        var vector = new float[Plan.FeatureCount];
        var defaulted = new long[Plan.FeatureCount];
        long late = 0, outOfOrder = 0;
        var maxDiff = 0.0;
        for (var i = 0; i < history.Count; i++)
        {
            var user = history.EntityKey(i);
            if (!states.TryGetValue(user, out var state)) states[user] = state = engine.NewState();
            var t = history.TimeMs(i);
            engine.Read(state, state.Watermark, t, aggregates);
            if (engine.IsLate(state.Watermark, t)) late++;
            else
            {
                if (t < state.Watermark) outOfOrder++;
                engine.Add(state, t, history.Numerics(i));
                engine.Trim(state);
            }
            assembler.Assemble(history.Numerics(i), history.Texts(i), aggregates, [], vector, defaulted);
            for (var f = 0; f < vector.Length; f++) maxDiff = Math.Max(maxDiff, Math.Abs(vector[f] - batch.Row(i)[f]));
        }

        Assert.True(late > 20, $"the history should contain late events ({late})");
        Assert.True(outOfOrder > 100, $"the history should contain out-of-order events within the lateness ({outOfOrder})");
        Assert.Equal(late, batch.LateEvents);
        Assert.True(maxDiff <= 1e-6, $"max |stream - batch| = {maxDiff}");
    }

    /// <summary>
    /// Point in time: rewrite everything that happened after a cut-off (amounts ×100, labels flipped,
    /// and labels of earlier events not yet known at the cut-off) and no training row at or before the
    /// cut-off changes. A value that became known later cannot leak into an earlier row.
    /// </summary>
    [Fact]
    public void NothingKnownAfterAnEventsTime_ReachesItsTrainingRow()
    {
        var plan = FeatureSetLoader.LoadFile(Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"));
        var history = SyntheticHistory.Generate(plan, new HistoryOptions { Events = 30_000, Span = TimeSpan.FromDays(20), Seed = 3 });
        var rows = PointInTimeFeatures.Compute(history, LookupTimeline.Compute(history, history.MaxTimeMs + 1));

        var amount = plan.NumericSlot("amount");
        foreach (var days in new[] { 8.3, 12.7, 17.1 })
        {
            var cut = history.MinTimeMs + (long)TimeSpan.FromDays(days).TotalMilliseconds;
            var rewritten = new EventHistory(plan);
            var numerics = new double[plan.NumericFields.Count];
            for (var i = 0; i < history.Count; i++)
            {
                history.Numerics(i).CopyTo(numerics);
                var t = history.TimeMs(i);
                var label = history.Label(i);
                if (t > cut) numerics[amount] *= 100;
                if (t + plan.LabelKnownAfterMs > cut) label = 1 - label;
                rewritten.Add(history.Id(i), t, numerics, history.Texts(i), label, []);
            }
            var after = PointInTimeFeatures.Compute(rewritten, LookupTimeline.Compute(rewritten, rewritten.MaxTimeMs + 1));
            int checkedRows = 0, changedLater = 0;
            for (var i = 0; i < history.Count; i++)
            {
                if (history.TimeMs(i) <= cut)
                {
                    Assert.True(rows.Row(i).SequenceEqual(after.Row(i)), $"row {i} at {history.TimeMs(i)} changed although only data after {cut} was rewritten");
                    checkedRows++;
                }
                else if (!rows.Row(i).SequenceEqual(after.Row(i))) changedLater++;
            }
            Assert.True(checkedRows > 5_000);
            Assert.True(changedLater > 1_000, "the rewrite must be visible after the cut-off, or the test proves nothing");
        }
    }

    [Fact]
    public void Lookups_UseTheNewestSnapshotNotAfterTheEvent_AndExpireAfterTheTtl()
    {
        var plan = FeatureSetLoader.LoadFile(Path.Combine(AppContext.BaseDirectory, "schemas", "features", "card_payments.yaml"));
        var timeline = new LookupTimeline(plan);
        var day = 86_400_000L;
        timeline.Add(0, "m1", 10 * day, [0.5, 10]);
        timeline.Add(0, "m1", 11 * day, [0.25, 20]);
        var texts = new string?[plan.TextFields.Count];
        texts[plan.Lookups[0].EntityTextSlot] = "m1";
        var values = new double[plan.LookupValueCount];

        Assert.Equal(0, timeline.Resolve(texts, 10 * day - 1, values));
        Assert.True(double.IsNaN(values[0]));                       // nothing known yet
        timeline.Resolve(texts, 11 * day - 1, values);
        Assert.Equal(0.5, values[0]);                                 // not the 11th's snapshot
        timeline.Resolve(texts, 11 * day, values);
        Assert.Equal(0.25, values[0]);
        Assert.Equal(0, timeline.Resolve(texts, 14 * day, values));   // exactly the 3d TTL: still fresh
        Assert.Equal(1, timeline.Resolve(texts, 14 * day + 1, values));
        Assert.True(double.IsNaN(values[0]));                         // stale → default
    }
}
