using System.Collections.Concurrent;
using StreamInference.Batch.Materialization;
using StreamInference.Batch.Onnx;
using StreamInference.Infrastructure.Metrics;

namespace StreamInference.IntegrationTests;

/// <summary>
/// One definition, two paths: the same event history through the streaming path (Kafka → processor →
/// window state in Redis) and through the batch path (the topic read back, features in event-time
/// order) must give the same vector for every event.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class FeatureParityTests(ServicesFixture services, ITestOutputHelper output) : TempDirectoryTest("si-parity-")
{
    private static readonly Avro.RecordSchema Reader = ServicesFixture.PaymentEventSchema;
    private static readonly DateTimeOffset T0 = new(2026, 3, 2, 8, 0, 0, TimeSpan.Zero);

    private static string Definition(string name) => $$"""
        featureSet: {{name}}
        version: 1
        event: { idField: event_id, entityKeyField: card_id, timeField: event_time, allowedLateness: 2m }
        lookups:
          - name: merchant_stats
            entityField: merchant_id
            ttl: 1h
            refresh: 30m
            fields:
              - { name: mean_amount_2h, function: mean, of: amount, window: 2h, bucket: 10m }
              - { name: count_2h, function: count, window: 2h, bucket: 10m }
        features:
          - { name: log_amount, event: amount, transform: log1p, default: 0 }
          - { name: online, event: channel, transform: equals(ONLINE), default: 0 }
          - { name: channel_index, event: channel, transform: "index(POS,ONLINE,ATM)", default: -1 }
          - { name: count_10m, window: { function: count, size: 10m, bucket: 1m }, default: 0 }
          - { name: sum_30m, window: { function: sum, of: amount, size: 30m, bucket: 5m }, default: 0 }
          - { name: mean_1h, window: { function: mean, of: amount, size: 1h, bucket: 5m }, transform: log1p, default: -1 }
          - { name: min_15m, window: { function: min, of: amount, size: 15m, bucket: 1m }, default: -1 }
          - { name: max_2h, window: { function: max, of: amount, size: 2h, bucket: 10m }, default: -1 }
          - { name: merchant_mean, lookup: merchant_stats.mean_amount_2h, default: -5 }
          - { name: merchant_count, lookup: merchant_stats.count_2h, transform: log1p, default: -5 }
        """;

    /// <summary>Writes the definition and a model pinned to it (zero weights: the scores do not matter here).</summary>
    private (string DefinitionPath, FeaturePlan Plan, string Models) Setup(string name)
    {
        var path = Path.Combine(TempDir, name + ".yaml");
        File.WriteAllText(path, Definition(name));
        var plan = FeatureSetLoader.LoadFile(path);
        var models = Path.Combine(TempDir, "models");
        var version = Path.Combine(models, name + "-model", "1");
        Directory.CreateDirectory(version);
        var f = plan.FeatureCount;
        var graph = new OnnxGraph("zero").InputMatrix("features", f).Initializer("w", new float[f], f, 1)
            .Node("MatMul", ["features", "w"], ["score"]).OutputTensor("score", OnnxGraph.Float, -1, 1);
        File.WriteAllBytes(Path.Combine(version, "model.onnx"), graph.ToModel());
        File.WriteAllText(Path.Combine(version, "manifest.json"), new ModelManifest
        {
            Name = name + "-model", Version = "1", FeatureSet = plan.Name, FeatureSetVersion = plan.Version,
            Input = "features", Features = plan.Features.Select(x => x.Name).ToList(), ScoreOutput = "score",
        }.ToJson());
        return (path, plan, models);
    }

    /// <summary>
    /// Events over five hours for 30 cards and 20 merchants, in arrival order: most arrive at once,
    /// about 23 % up to the allowed lateness late (out of order), about 2 % beyond it.
    /// </summary>
    private static List<PaymentEvent> History(int count, int seed)
    {
        var random = new Random(seed);
        var events = new List<(PaymentEvent Event, DateTimeOffset Arrival)>();
        for (var i = 0; i < count; i++)
        {
            var t = T0 + TimeSpan.FromMilliseconds(random.NextDouble() * 5 * 3_600_000);
            var u = random.NextDouble();
            var delay = TimeSpan.FromMilliseconds(u < 0.02 ? random.Next(150_000, 900_000) : u < 0.25 ? random.Next(1_000, 119_000) : random.Next(0, 300));
            var merchant = random.NextDouble() < 0.05 ? $"merchant-new-{random.Next(5)}" : $"merchant-{random.Next(20):D2}";
            var channel = (PaymentChannel)random.Next(3);
            events.Add((new PaymentEvent($"evt-{seed}-{i:D6}", t, $"card-{random.Next(30):D3}", merchant, Math.Round(1 + random.NextDouble() * 300, 2),
                "EUR", channel, "DE", false, false), t + delay));
        }
        return events.OrderBy(e => e.Arrival).Select(e => e.Event).ToList();
    }

    private sealed class FeatureCapture(int featureCount) : IPipelineObserver
    {
        public ConcurrentDictionary<string, float[]> Vectors { get; } = new();
        public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich)
        {
            for (var k = 0; k < batch.OkCount; k++)
                Vectors.TryAdd(batch.EventIds[batch.Rows[k]]!, batch.FeatureRow(k)[..featureCount].ToArray());
        }
        public void OnBatchScored(EventBatch batch, TimeSpan score) { }
        public void OnBatchPublished(EventBatch batch, TimeSpan publish) { }
        public void OnBatchDelivered(EventBatch batch, long nowMs) { }
        public void OnRetry(string stage, Exception error) { }
    }

    private ProcessorOptions Options(string definition, string models, string modelName, string input, string group)
    {
        var o = services.ProcessorOptions(input, input + "-predictions", input + "-dlq", group);
        o.Model = new ModelOptions { Repository = models, Name = modelName, Version = "1" };
        o.Features.Definition = definition;
        o.Pipeline.MaxBatchSize = 64;
        return o;
    }

    /// <summary>Runs a processor until its observer saw <paramref name="expected"/> events; returns its metrics.</summary>
    private async Task<ProcessorMetrics> ProcessAsync(ProcessorOptions options, FeatureCapture capture, int expected)
    {
        var sw = Stopwatch.StartNew();
        await using var processor = await ProcessorHarness.StartAsync(options, output, observer: capture);
        await processor.WaitUntilAsync(() => capture.Vectors.Count >= expected, TimeSpan.FromSeconds(120) - sw.Elapsed);
        if (processor.Run.IsCompleted) await processor.Run;
        // Let the last batch's deliveries complete before stopping, so the run ends cleanly.
        while (processor.Metrics.PublishedCount < expected && sw.Elapsed < TimeSpan.FromSeconds(150)) await Task.Delay(50);
        await processor.StopAsync();
        Assert.Equal(expected, capture.Vectors.Count);
        return processor.Metrics;
    }

    /// <summary>The events, in their order, on a new topic (with its -predictions and -dlq topics); the topic.</summary>
    private async Task<string> ProduceToNewTopicAsync(string prefix, List<PaymentEvent> events)
    {
        var input = await services.CreateTopicAsync(prefix, 4);
        if (services.Mock is { } mock)
        {
            mock.CreateTopic(input + "-predictions", 4, 3);
            mock.CreateTopic(input + "-dlq", 1, 3);
        }
        using var registry = services.RegistryClient();
        await SyntheticPaymentProducer.ProduceEventsAsync(services.BootstrapServers, registry, Reader, input, events, CancellationToken.None);
        return input;
    }

    [Fact]
    public async Task StreamAndBatch_ComputeTheSameVectorForEveryEvent()
    {
        var (definition, plan, models) = Setup("parity");
        var events = History(3000, seed: 17);
        var topic = await ProduceToNewTopicAsync("parity", events);
        using var registry = services.RegistryClient();

        // The batch path reads the topic back: the same records, decoded by the same decoder.
        var history = (await TopicHistory.ReadAsync(services.BootstrapServers, topic, registry, Reader, plan, labels: null)).History;
        Assert.Equal(events.Count, history.Count);

        // Lookups: one materialization two hours in. Earlier events must not see it (it did not exist
        // yet), events more than the 1 h TTL after it find it stale, merchants first seen later have none.
        var snapshotAt = (T0 + TimeSpan.FromHours(2)).ToUnixTimeMilliseconds();
        var computed = LookupTimeline.Compute(history, snapshotAt);
        var timeline = new LookupTimeline(plan);
        foreach (var (entity, asOf, values) in computed.Latest(0, snapshotAt)) timeline.Add(0, entity, asOf, values);
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis))
            await RedisMaterializer.WriteAsync(redis.GetDatabase(), plan, timeline, snapshotAt, windowStates: null);

        var capture = new FeatureCapture(plan.FeatureCount);
        var metrics = await ProcessAsync(Options(definition, models, "parity-model", topic, ServicesFixture.NewGroup("parity")), capture, events.Count);

        var finalStates = new Dictionary<string, StreamInference.Core.Features.Windows.EntityWindowState>();
        var batch = PointInTimeFeatures.Compute(history, timeline, finalStates: finalStates);
        var maxDiff = 0.0;
        string? worst = null;
        for (var i = 0; i < history.Count; i++)
        {
            Assert.True(capture.Vectors.TryGetValue(history.Id(i), out var streamed), $"the stream produced no vector for {history.Id(i)}");
            var row = batch.Row(i);
            for (var f = 0; f < row.Length; f++)
            {
                var d = Math.Abs(streamed[f] - row[f]);
                if (d > maxDiff) { maxDiff = d; worst = $"{history.Id(i)} {plan.Features[f].Name}: stream {streamed[f]}, batch {row[f]}"; }
            }
        }

        // What the history exercised, so that equality means something.
        var lookupFeature = plan.IndexOf("merchant_mean");
        var before = Enumerable.Range(0, history.Count).Count(i => history.TimeMs(i) < snapshotAt && (batch.DefaultedMask[i] & (1L << lookupFeature)) != 0);
        var fresh = Enumerable.Range(0, history.Count).Count(i => (batch.DefaultedMask[i] & (1L << lookupFeature)) == 0);
        var outOfOrder = 0;
        var newest = new Dictionary<string, long>();
        for (var i = 0; i < history.Count; i++)
        {
            var card = history.EntityKey(i);
            if (newest.TryGetValue(card, out var n) && history.TimeMs(i) < n && !batch.Late[i]) outOfOrder++;
            newest[card] = Math.Max(n, history.TimeMs(i));
        }
        output.WriteLine($"max |stream - batch| = {maxDiff} ({worst}); late {batch.LateEvents}, out of order within lateness {outOfOrder}, " +
                         $"stale lookups {batch.StaleLookups}, lookups not yet known {before}, fresh {fresh}");
        Assert.True(maxDiff <= 1e-6, $"stream and batch differ by {maxDiff}: {worst}");
        Assert.True(batch.LateEvents > 10, "the history must contain events beyond the allowed lateness");
        Assert.Equal(batch.LateEvents, metrics.LateCount);
        Assert.True(outOfOrder > 100, "the history must contain out-of-order events within the lateness");
        Assert.True(batch.StaleLookups > 100, "some events must find their lookup stale");
        Assert.True(before > 100, "some events must precede the materialization");
        Assert.True(fresh > 100, "some events must use a fresh lookup value");
        Assert.True(batch.DefaultedPerFeature[plan.IndexOf("min_15m")] > 0, "some windows must be empty (missing values)");

        // The state the stream left in Redis is the batch path's final state, minus what retention dropped.
        var engine = new StreamInference.Core.Features.Windows.WindowEngine(plan);
        using var redis2 = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var buckets = 0;
        foreach (var (card, state) in finalStates)
        {
            engine.Trim(state);
            Assert.Equal(state.Watermark, (long)await redis2.GetDatabase().HashGetAsync(FeatureKeys.WindowMeta(plan, card), "wm"));
            for (var s = 0; s < plan.Series.Count; s++)
            {
                var stored = (await redis2.GetDatabase().HashGetAllAsync(FeatureKeys.Series(plan, plan.Series[s], card)))
                    .ToDictionary(e => long.Parse((string)e.Name!), e => StreamInference.Infrastructure.Redis.RedisFeatureStore.ParseStats((string)e.Value!));
                Assert.Equal(state.Series[s].Buckets.Keys.Order(), stored.Keys.Order());
                foreach (var (bucket, expected) in state.Series[s].Buckets)
                {
                    var actual = stored[bucket];
                    Assert.Equal(expected.Count, actual.Count);
                    Assert.Equal(expected.Sum, actual.Sum, 9);
                    Assert.Equal(expected.Min, actual.Min);
                    Assert.Equal(expected.Max, actual.Max);
                    buckets++;
                }
            }
        }
        Assert.True(buckets > 500, $"compared {buckets} buckets");
    }

    [Fact]
    public async Task Redelivery_OfProcessedRecords_LeavesEveryAggregateUnchanged()
    {
        var (definition, plan, models) = Setup("redelivery");
        var events = History(1200, seed: 23);
        var topic = await ProduceToNewTopicAsync("redeliver", events);

        using var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var db = redis.GetDatabase();
        var cards = events.Select(e => e.CardId).Distinct().ToArray();
        async Task<SortedDictionary<string, string>> Snapshot()
        {
            var state = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var card in cards)
            {
                var keys = plan.Series.Select(s => FeatureKeys.Series(plan, s, card)).Append(FeatureKeys.WindowMeta(plan, card));
                foreach (var key in keys)
                    foreach (var entry in await db.HashGetAllAsync(key))
                        state[$"{key} {entry.Name}"] = entry.Value!;
            }
            return state;
        }

        await ProcessAsync(Options(definition, models, "redelivery-model", topic, ServicesFixture.NewGroup("first")), new FeatureCapture(plan.FeatureCount), events.Count);
        var after = await Snapshot();
        Assert.True(after.Count > cards.Length * plan.Series.Count, $"the first pass should have built window state ({after.Count} fields)");

        // A second consumer group reads the whole topic again: every record is a redelivery.
        var second = await ProcessAsync(Options(definition, models, "redelivery-model", topic, ServicesFixture.NewGroup("second")),
            new FeatureCapture(plan.FeatureCount), events.Count);
        var again = await Snapshot();

        Assert.Equal(events.Count, second.RedeliveredCount);
        Assert.Equal(after, again);
    }


    /// <summary>
    /// The feature store keeps each entity's window state between batches and Redis skips returning it
    /// while it is current. Two stores (two instances after a rebalance) take turns on the same cards, so
    /// each one's cached state is regularly outdated by the other. Without write-behind every window value
    /// must equal what a store without a cache computes from the state in Redis. With write-behind a batch is
    /// scored on the cached state before Redis says it is outdated: only the rows of cards the other store
    /// wrote since this one last did may differ, every such card is counted as a conflict, and the state left
    /// in Redis must equal the reference's bucket for bucket (every event applied exactly once). Batches
    /// delivered twice and events from two partitions exercise the redelivery marker.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WindowStateCache_GivesTheSameWindows_WhenAnotherInstanceWritesTheSameEntities(bool writeBehind)
    {
        var cachedPlan = FeatureSetLoader.Parse(Definition("cache-" + Guid.NewGuid().ToString("N")[..8]));
        var referencePlan = FeatureSetLoader.Parse(Definition("nocache-" + Guid.NewGuid().ToString("N")[..8]));
        var events = History(2400, seed: 29);
        using var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var a = new StreamInference.Infrastructure.Redis.RedisFeatureStore(redis, cachedPlan, writeBehind: writeBehind);
        var b = new StreamInference.Infrastructure.Redis.RedisFeatureStore(redis, cachedPlan, writeBehind: writeBehind);
        var reference = new StreamInference.Infrastructure.Redis.RedisFeatureStore(redis, referencePlan, cachedEntities: 0);
        EventBatch Batch(FeaturePlan plan, int from, int count) => DecodedBatch(plan, events, from, count);

        const int size = 40;
        var compared = 0;
        var maxDiff = 0.0;
        var differing = 0;
        var mayDiffer = 0;
        // Which store last wrote each card: a store's cached state of a card is outdated when the other one did.
        var lastWriter = new Dictionary<string, object>(StringComparer.Ordinal);
        for (int from = 0, n = 0; from < events.Count; from += size, n++)
        {
            var count = Math.Min(size, events.Count - from);
            // Mostly instance a; every third batch instance b; now and then a batch is delivered twice.
            var store = n % 3 == 2 ? b : a;
            var redeliver = n % 7 == 3;
            for (var pass = 0; pass < (redeliver ? 2 : 1); pass++)
            {
                var cached = Batch(cachedPlan, from, count);
                var plain = Batch(referencePlan, from, count);
                await store.FetchAsync(cached, CancellationToken.None);
                await store.PersistAsync(cached, CancellationToken.None);
                await reference.FetchAsync(plain, CancellationToken.None);
                await reference.PersistAsync(plain, CancellationToken.None);
                var outdated = new HashSet<string>(StringComparer.Ordinal);
                for (var r = 0; r < count; r++)
                {
                    var card = cached.EntityKeys[r]!;
                    if (writeBehind && lastWriter.TryGetValue(card, out var writer) && writer != store) outdated.Add(card);
                }
                if (outdated.Count == 0)
                {
                    Assert.Equal(plain.RedeliveredEvents, cached.RedeliveredEvents);
                    Assert.Equal(plain.LateEvents, cached.LateEvents);
                }
                for (var r = 0; r < count; r++)
                {
                    var x = cached.WindowRow(r);
                    var y = plain.WindowRow(r);
                    var exact = !outdated.Contains(cached.EntityKeys[r]!);
                    if (!exact) mayDiffer++;
                    var rowDiffers = false;
                    for (var w = 0; w < x.Length; w++)
                    {
                        var diff = double.IsNaN(x[w]) != double.IsNaN(y[w]) ? double.PositiveInfinity
                            : double.IsNaN(y[w]) ? 0 : Math.Abs(x[w] - y[w]);
                        rowDiffers |= diff > 1e-6;
                        if (exact) maxDiff = Math.Max(maxDiff, diff);
                        compared++;
                    }
                    if (rowDiffers) differing++;
                }
                for (var r = 0; r < count; r++) lastWriter[cached.EntityKeys[r]!] = store;
            }
        }
        var cards = events.Select(e => e.CardId).Distinct().ToArray();
        output.WriteLine($"write-behind {writeBehind}: compared {compared} window values, max |cached - uncached| = {maxDiff} where the cache was current; " +
                         $"{differing} rows differ, {mayDiffer} rows of cards the other store wrote since; a: {a.CacheHits} hits, {a.CacheMisses} misses, " +
                         $"{a.Conflicts} conflicts; b: {b.CacheHits} hits, {b.CacheMisses} misses, {b.Conflicts} conflicts; " +
                         $"reference: {reference.CacheHits} hits, {reference.CacheMisses} misses ({cards.Length} cards)");
        Assert.True(maxDiff <= 1e-6, $"cached and uncached windows differ by {maxDiff}"); // summation order only
        Assert.True(compared > 10_000);
        Assert.Equal(0, reference.CacheHits);
        Assert.True(a.CacheHits > 300, "instance a must mostly find its cached state current");
        // Each instance misses more often than once per card: the other one's writes outdated its cache.
        Assert.True(a.CacheMisses + a.Conflicts > cards.Length && b.CacheMisses + b.Conflicts > cards.Length,
            "the other instance's writes must make cached state miss");
        if (writeBehind)
        {
            Assert.True(a.Conflicts > 0 && b.Conflicts > 0, "write-behind finds the outdated state when its write is refused");
            Assert.True(differing > 0 && differing <= mayDiffer, $"{differing} rows differ, {mayDiffer} could");
        }
        else
        {
            Assert.Equal(0, differing);
        }

        // Every event is in Redis's aggregates exactly once, whichever path applied it.
        var db = redis.GetDatabase();
        var buckets = 0;
        foreach (var card in cards)
        {
            for (var s = 0; s < cachedPlan.Series.Count; s++)
            {
                var mine = await db.HashGetAllAsync(FeatureKeys.Series(cachedPlan, cachedPlan.Series[s], card));
                var theirs = await db.HashGetAllAsync(FeatureKeys.Series(referencePlan, referencePlan.Series[s], card));
                Assert.Equal(theirs.Length, mine.Length);
                var expected = theirs.ToDictionary(e => (string)e.Name!, e => StreamInference.Infrastructure.Redis.RedisFeatureStore.ParseStats((string)e.Value!));
                foreach (var entry in mine)
                {
                    var got = StreamInference.Infrastructure.Redis.RedisFeatureStore.ParseStats((string)entry.Value!);
                    var want = expected[(string)entry.Name!];
                    Assert.Equal(want.Count, got.Count);
                    Assert.Equal(want.Sum, got.Sum, 6);
                    buckets++;
                }
            }
        }
        Assert.True(buckets > cards.Length, $"{buckets} buckets compared");
    }

    // Two input partitions, alternating: an entity's events can come from both (its key in the event
    // need not be the Kafka key), so a batch can end on the same (source, offset) it started from.
    private static readonly StreamInference.Core.Offsets.PartitionOffsets[] Sources = [new("cache-test", 0), new("cache-test", 1)];

    /// <summary>Events [from, from + count) as the decoder leaves them in a batch; offset = index.</summary>
    private static EventBatch DecodedBatch(FeaturePlan plan, List<PaymentEvent> events, int from, int count)
    {
        var batch = new EventBatch(plan, count, 1);
        for (var r = 0; r < count; r++)
        {
            var i = from + r;
            var e = events[i];
            batch.Records[r] = new InputRecord(Sources[i % 2], i, i, null, null, e.EventTime.ToUnixTimeMilliseconds(), null);
            batch.EventIds[r] = e.EventId;
            batch.EntityKeys[r] = e.CardId;
            batch.EventTimesMs[r] = e.EventTime.ToUnixTimeMilliseconds();
            foreach (var f in plan.NumericFields) batch.NumericRow(r)[f.Slot] = f.Name == "amount" ? e.Amount : double.NaN;
            foreach (var f in plan.TextFields)
                batch.TextRow(r)[f.Slot] = f.Name switch { "card_id" => e.CardId, "merchant_id" => e.MerchantId, "channel" => e.Channel.ToString().ToUpperInvariant(), _ => null };
        }
        batch.Count = count;
        batch.CollectCleanRows();
        return batch;
    }

    /// <summary>Every series bucket of every card: what the windows of the next event would be computed from.</summary>
    private static async Task<SortedDictionary<string, (long Count, double Sum)>> SeriesStateAsync(IDatabase db, FeaturePlan plan, IEnumerable<string> cards)
    {
        var state = new SortedDictionary<string, (long, double)>(StringComparer.Ordinal);
        foreach (var card in cards)
            foreach (var series in plan.Series)
                foreach (var entry in await db.HashGetAllAsync(FeatureKeys.Series(plan, series, card)))
                {
                    var stats = StreamInference.Infrastructure.Redis.RedisFeatureStore.ParseStats((string)entry.Value!);
                    state[$"{card} {series.Name} {entry.Name}"] = (stats.Count, Math.Round(stats.Sum, 6));
                }
        return state;
    }

    /// <summary>
    /// Write-behind lets the batch stage run ahead of the persist stage: here instance a fetches two batches before
    /// the first one's writes are settled, and instance b wrote the same cards before, so Redis refuses a's writes
    /// and they are re-applied from Redis's state — each batch with its own events. Redis must end equal, bucket for
    /// bucket, to a store without a cache that applied the same batches in order.
    /// </summary>
    [Fact]
    public async Task WriteBehind_BatchStageAhead_RefusedWritesAreReappliedWithTheirOwnEvents()
    {
        var plan = FeatureSetLoader.Parse(Definition("ahead-" + Guid.NewGuid().ToString("N")[..8]));
        var referencePlan = FeatureSetLoader.Parse(Definition("ahead-ref-" + Guid.NewGuid().ToString("N")[..8]));
        var events = History(450, seed: 31);
        using var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis);
        var a = new StreamInference.Infrastructure.Redis.RedisFeatureStore(redis, plan);
        var b = new StreamInference.Infrastructure.Redis.RedisFeatureStore(redis, plan);
        var reference = new StreamInference.Infrastructure.Redis.RedisFeatureStore(redis, referencePlan, cachedEntities: 0);
        const int size = 50;
        var batches = Enumerable.Range(0, events.Count / size).Select(n => DecodedBatch(plan, events, n * size, size)).ToList();

        async Task Both(StreamInference.Infrastructure.Redis.RedisFeatureStore store, EventBatch batch)
        {
            await store.FetchAsync(batch, CancellationToken.None);
            await store.PersistAsync(batch, CancellationToken.None);
        }
        await Both(a, batches[0]);    // a reads every card and caches it
        await Both(a, batches[1]);    // a's writes from its cache
        await Both(b, batches[2]);    // b writes the same cards: a's cache is outdated
        for (var n = 3; n < batches.Count - 1; n += 2)
        {
            // a runs one batch ahead: the next batch regroups its rows before the previous one's refused writes are re-applied.
            await a.FetchAsync(batches[n], CancellationToken.None);
            await a.FetchAsync(batches[n + 1], CancellationToken.None);
            await a.PersistAsync(batches[n], CancellationToken.None);
            await a.PersistAsync(batches[n + 1], CancellationToken.None);
        }
        for (var n = 0; n < batches.Count; n++)
            await Both(reference, DecodedBatch(referencePlan, events, n * size, size));

        var cards = events.Select(e => e.CardId).Distinct().ToList();
        var db = redis.GetDatabase();
        var mine = await SeriesStateAsync(db, plan, cards);
        var theirs = await SeriesStateAsync(db, referencePlan, cards);
        output.WriteLine($"{cards.Count} cards, {mine.Count} buckets; a: {a.CacheHits} accepted, {a.CacheMisses} read, {a.Conflicts} re-applied; b: {b.CacheMisses} read");
        Assert.True(a.Conflicts > 0, "b's writes must outdate a's cache");
        Assert.True(mine.Count > cards.Count);
        Assert.Equal(theirs, mine);
    }
}
