using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Evaluation;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The label join with its state in a real Redis (issue 19): it joins exactly as the in-memory rules on the same
/// stream; a join restarted mid-stream, with the last records redelivered, loses no label and counts none twice;
/// and the Redis bytes a pending prediction costs are measured.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class RedisLabelJoinTests(ServicesFixture services, ITestOutputHelper output)
{
    private const long Day = 86_400_000;

    /// <summary>A stream of predictions (a champion and, for a third of the events, a shadow) and labels, in arrival order, with event times near now.</summary>
    private static List<object> Stream(int events, int seed, string run)
    {
        var random = new Random(seed);
        // From now on (Redis expires a key at its event time plus the horizon, by the wall clock), 5 s apart: 11 hours for 8,000 events.
        var start = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var records = new List<(long At, object Record)>();
        for (var i = 0; i < events; i++)
        {
            var id = $"{run}-e{i}";
            var entity = $"{run}-card{i % 500}";
            var t = start + (long)i * 5_000;
            var y = random.NextDouble() < 0.1;
            if (random.NextDouble() < 0.97)
            {
                records.Add((t + random.Next(0, 2_000), new ScoredEvent(id, entity, "gbm@1", "champion", random.NextDouble(), t, 1)));
                if (i % 3 == 0) records.Add((t + random.Next(0, 2_000), new ScoredEvent(id, entity, "logreg@3", "shadow", random.NextDouble(), t, 1)));
                if (random.NextDouble() < 0.02) records.Add((t + random.Next(2_000, 60_000), new ScoredEvent(id, entity, "gbm@1", "champion", 0.5, t, 1)));
            }
            var r = random.NextDouble();
            if (r < 0.1) continue;
            var delay = r < 0.15 ? -random.Next(1, 4_000) : random.Next(0, 3_000_000);
            var label = new GroundTruth(id, entity, y, t + Math.Max(0, delay), t);
            records.Add((t + delay, label));
            if (random.NextDouble() < 0.01) records.Add((t + delay + 1, label));
        }
        // Labels of the first events again, after the stream: by then the clock (the last event time predicted) is past their horizon.
        foreach (var (at, record) in records.Take(200).ToList())
            if (record is GroundTruth g) records.Add((at + 5 * Day, g));
        return [.. records.OrderBy(r => r.At).Select(r => r.Record)];
    }

    private static async Task<List<LabelledPrediction>> FeedAsync(RedisLabelJoin join, IEnumerable<object> records)
    {
        var emitted = new List<LabelledPrediction>();
        foreach (var record in records)
            emitted.AddRange(record is ScoredEvent p ? await join.OnPredictionAsync(p) : await join.OnLabelAsync((GroundTruth)record));
        return emitted;
    }

    private static List<LabelledPrediction> Reference(IEnumerable<object> records, long horizon, out JoinCounts counts)
    {
        var join = new LabelJoin(horizon);
        var emitted = new List<LabelledPrediction>();
        foreach (var record in records)
            emitted.AddRange(record is ScoredEvent p ? join.OnPrediction(p) : join.OnLabel((GroundTruth)record));
        counts = join.Counts;
        return emitted;
    }

    private static IEnumerable<string> Keys(IEnumerable<LabelledPrediction> emitted) =>
        emitted.Select(e => $"{e.Prediction.EventId}|{e.Prediction.Model}|{e.Label}|{e.Prediction.Score:R}").Order(StringComparer.Ordinal);

    [Fact]
    public async Task JoinsAsTheInMemoryRules_AndARestartWithRedeliveryLosesAndDoublesNothing()
    {
        const long horizon = Day / 4;   // six hours: the first events' horizon passes within the stream
        var run = Guid.NewGuid().ToString("N")[..8];
        var records = Stream(8_000, 1921, run);
        var expected = Reference(records, horizon, out var counts);
        using var mux = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var db = mux.GetDatabase();

        // Straight through.
        var join = new RedisLabelJoin(db, horizon);
        var emitted = await FeedAsync(join, records);
        output.WriteLine($"{records.Count} records; in memory: {counts}; Redis: {join.Counts}");
        Assert.Equal(Keys(expected), Keys(emitted));
        Assert.True(counts.Late > 0 && counts.Early > 0 && counts.DuplicateLabels > 0 && counts.DuplicatePredictions > 0, counts.ToString());
        Assert.Equal((counts.Joined, counts.Early, counts.Late, counts.DuplicateLabels, counts.DuplicatePredictions, counts.Emitted),
            (join.Counts.Joined, join.Counts.Early, join.Counts.Late, join.Counts.DuplicateLabels, join.Counts.DuplicatePredictions, join.Counts.Emitted));

        // Restart: a second run of the same stream under other ids; the first join stops (killed) after 60 % of it, and a new
        // one, from the same Redis, resumes 500 records earlier (the uncommitted tail redelivered).
        var second = Guid.NewGuid().ToString("N")[..8];
        var again = Stream(8_000, 1921, second);
        // Under an evaluation's namespace, as `evaluate` keys them (the bytes measured below include it).
        var ns = EvaluationNamespace.Of("streaminference-evaluate");
        var before = new RedisLabelJoin(db, horizon, ns: ns);
        var cut = again.Count * 6 / 10;
        var first = await FeedAsync(before, again.Take(cut));
        var after = new RedisLabelJoin(db, horizon, startClockMs: before.NowMs, ns: ns);
        var rest = await FeedAsync(after, again.Skip(cut - 500));
        var together = first.Concat(rest).ToList();
        output.WriteLine($"restart: {first.Count} emitted before, {rest.Count} after; the resumed join counted {after.Counts.DuplicatePredictions} duplicate predictions and {after.Counts.DuplicateLabels} duplicate labels");
        Assert.Equal(Keys(Reference(again, horizon, out _)), Keys(together));   // nothing lost, nothing twice

        // Redis bytes per pending prediction: events predicted (one model) and not yet labelled.
        var pending = again.OfType<ScoredEvent>().Where(p => p.Model == "gbm@1").GroupBy(p => p.EventId).Select(g => g.First())
            .Where(p => !again.OfType<GroundTruth>().Any(l => l.EventId == p.EventId)).Take(200).ToList();
        var sizes = new List<long>();
        foreach (var p in pending)
        {
            var fields = await db.HashLengthAsync(after.Key(p.EntityKey, p.EventId));
            if (fields != 1) continue;   // also a shadow's prediction
            var usage = await db.ExecuteAsync("MEMORY", "USAGE", (string)after.Key(p.EntityKey, p.EventId)!);
            if (!usage.IsNull) sizes.Add((long)usage);
        }
        output.WriteLine($"Redis ({services.RedisKind}): {(sizes.Count == 0 ? "MEMORY USAGE not answered" : $"{sizes.Average():0} bytes per pending prediction (median {sizes.Order().ElementAt(sizes.Count / 2)}, {sizes.Count} keys)")}");
        Assert.NotEmpty(pending);
    }

    /// <summary>
    /// The evaluation windows' bytes per prediction (issue 19, acceptance 6): one window's hash of 20,000 predictions
    /// (the hashtable encoding a real window has), half of them labelled, as the live evaluation writes them.
    /// </summary>
    [Fact]
    public async Task EvaluationWindow_BytesPerPrediction_AreMeasured()
    {
        using var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var db = redis.GetDatabase();
        var run = Guid.NewGuid().ToString("N")[..8];
        var windows = new RedisEvaluationWindows(db, EvaluationNamespace.Of("streaminference-evaluate"), windowMs: 3_600_000, horizonMs: 2 * Day, retentionMs: Day);
        var start = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 3_600_000 * 3_600_000;
        var random = new Random(19);
        const int n = 20_000;
        for (var i = 0; i < n; i++)
        {
            // Event ids as the synthetic producer makes them (a GUID's 36 characters).
            var p = new ScoredEvent(Guid.NewGuid().ToString(), $"card-{i % 500}", $"gbm-{run}@1", "champion", random.NextDouble(), start + i * 100L, 1);
            await windows.PredictedAsync(p);
            if (i % 2 == 0) await windows.LabelledAsync(new LabelledPrediction(p, random.NextDouble() < 0.05, p.EventTimeMs + Day));
        }
        var id = windows.WindowOf($"gbm-{run}@1", "champion", start);
        var content = await windows.ReadAsync(id);
        Assert.Equal(n, content.Predicted);
        Assert.Equal(n / 2, content.EventIds.Length);
        var usage = await db.ExecuteAsync("MEMORY", "USAGE", (string)windows.HashKey(id)!);
        output.WriteLine($"Redis ({services.RedisKind}): evaluation window of {n:N0} predictions ({n / 2:N0} labelled): " +
                         (usage.IsNull ? "MEMORY USAGE not answered" : $"{(long)usage:N0} bytes, {(long)usage / (double)n:0} bytes per prediction"));
        await db.KeyDeleteAsync(windows.HashKey(id));
        await db.SortedSetRemoveAsync(windows.OpenIndex, id.ToString());
    }
}
