using Parquet;
using StreamInference.Batch.Replay;
using StreamInference.Core.Deployment;

namespace StreamInference.IntegrationTests;

[Collection(ServicesCollection.Name)]
public sealed class ReplayTests(ServicesFixture services, ITestOutputHelper output) : TempDirectoryTest("si-replay-")
{
    private static readonly string Base = AppContext.BaseDirectory;
    private static readonly FeaturePlan Plan = ServicesFixture.CardPaymentsPlan;
    private static readonly AvroSchema Reader = ServicesFixture.PaymentEventSchema;
    private static readonly string ModelDir = ModelRepository.Resolve(Path.Combine(Base, "models"), "fraud-logreg", "latest");

    private async Task<ProduceSummary> ProduceAsync(string topic, int events, int seed, TimeSpan clockOffset = default)
    {
        var summary = await services.ProduceAsync(new ProduceOptions { Topic = topic, Events = events, Seed = seed, ClockOffset = clockOffset });
        Assert.Equal(0, summary.Failed);
        return summary;
    }

    /// <summary>
    /// Acceptance 1, 2 and 4: a time range is replayed (time → offset on the embedded cluster) while the
    /// live processor runs; the replay is killed after its first checkpoint and run again. The live
    /// output is complete and duplicate-free; the replay output holds exactly the range's events, any
    /// repeated record identical in key and value.
    /// </summary>
    [Fact]
    public async Task TimeRangeReplay_AlongsideTheLiveProcessor_KilledAndResumed_CoversExactlyTheRange()
    {
        var input = await services.CreateTopicAsync("payments", 3);
        var live = await services.CreateTopicAsync("predictions", 3);
        var dlq = await services.CreateTopicAsync("dlq", 1);
        var replayed = await services.CreateTopicAsync("replayed", 3);
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis))
            await WarmStart.MaterializeAsync(redis.GetDatabase(), Plan, events: 20_000);

        var sw = Stopwatch.StartNew();
        await using var processor = await ProcessorHarness.StartAsync(services.ProcessorOptions(input, live, dlq, ServicesFixture.NewGroup("live")), output);

        // Three stretches of traffic with gaps between them; the replay range is the middle one.
        var before = await ProduceAsync(input, 400, seed: 101);
        await Task.Delay(1500);
        var from = DateTimeOffset.UtcNow;
        var middle = await ProduceAsync(input, 900, seed: 102);
        await Task.Delay(1500);
        var to = DateTimeOffset.UtcNow;
        var after = await ProduceAsync(input, 400, seed: 103);

        using var registry = services.RegistryClient();
        var request = new ReplayRequest
        {
            BootstrapServers = services.BootstrapServers, Topic = input, From = from.ToString("O"), To = to.ToString("O"),
            ModelDirectory = ModelDir, OutputTopic = replayed, CheckpointPath = Path.Combine(TempDir, "replay.checkpoint"), CheckpointEvery = 250,
        };
        using (var kill = new CancellationTokenSource())
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                ReplayRunner.RunAsync(request, Plan, Reader, registry, onCheckpoint: _ => kill.Cancel(), ct: kill.Token));
        }
        var summary = await ReplayRunner.RunAsync(request, Plan, Reader, registry);
        output.WriteLine($"replay: {summary.Events} events in range, {summary.Predictions} written, {summary.SkippedAsDone} done before, " +
                         $"{summary.WarmupEvents} warm-up, {summary.EventsPerSecond} events/s, resumed {summary.Resumed}");
        Assert.True(summary.Resumed);
        Assert.Equal(middle.Produced, summary.Events);
        Assert.Equal(250, summary.SkippedAsDone);
        Assert.Equal(middle.Produced - 250, summary.Predictions);

        // The replay output: exactly the middle stretch, duplicates (from the killed run) identical.
        var records = ReadAll(replayed);
        var byKey = records.GroupBy(r => r.Key).ToDictionary(g => g.Key, g => g.ToList());
        var expected = middle.Records.Select(r => $"{r.EventId}@{Path.GetFileName(ModelDir)}").ToHashSet();
        Assert.Equal(expected.Order(), byKey.Keys.Order());
        Assert.All(byKey.Values, copies => Assert.All(copies, c => Assert.Equal(copies[0].Value, c.Value)));
        Assert.True(records.Count >= expected.Count);

        // The live processor, running all along, published each input exactly once.
        using var audit = new PredictionAudit(services.BootstrapServers, registry, live, dlq);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);
        var total = before.Produced + middle.Produced + after.Produced;
        while (audit.Predicted < total && sw.Elapsed < TimeSpan.FromSeconds(180)) await Task.Delay(50);
        await auditing.StopAsync();
        await processor.StopAsync();
        Assert.Equal(total, audit.Predicted);
        Assert.Equal(0L, audit.Duplicates);
        foreach (var r in before.Records.Concat(middle.Records).Concat(after.Records))
            Assert.Equal(r.EventId, audit.Predictions[(r.Partition, r.Offset)]);
    }

    /// <summary>
    /// Acceptance 3: replayed features are the batch path's point-in-time vectors, whatever Redis holds
    /// now (here: every merchant marked maximally risky, as of now).
    /// </summary>
    [Fact]
    public async Task ReplayedScores_AreTheBatchPathsPointInTimeScores_NotTodaysRedis()
    {
        var input = await services.CreateTopicAsync("payments", 2);
        // At a daytime hour: at night most payments are fraud and many scores sit at 1, where no lookup value moves them.
        var produced = await ProduceAsync(input, 600, seed: 202, ServicesFixture.DaytimeClockOffset());
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis))
        {
            var db = redis.GetDatabase();
            foreach (var merchant in Enumerable.Range(0, 500).Select(m => $"merchant-{m:D5}"))
                await db.HashSetAsync(FeatureKeys.Lookup(Plan.Lookups[0], merchant),
                    [new HashEntry("fraud_rate_30d", 1.0), new HashEntry("txn_count_30d", 1e6), new HashEntry(FeatureKeys.AsOfField, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds())]);
        }

        using var registry = services.RegistryClient();
        var path = Path.Combine(TempDir, "replay.parquet");
        var summary = await ReplayRunner.RunAsync(new ReplayRequest
        {
            BootstrapServers = services.BootstrapServers, Topic = input, From = "beginning", To = "now", ModelDirectory = ModelDir, OutputParquet = path,
        }, Plan, Reader, registry);
        Assert.Equal(produced.Produced, summary.Predictions);

        // The batch path over the same records, scored by the same model.
        var history = (await TopicHistory.ReadAsync(services.BootstrapServers, input, registry, Reader, Plan, labels: null)).History;
        var rows = PointInTimeFeatures.Compute(history, LookupTimeline.Compute(history, history.MaxTimeMs + 1));
        using var scorer = new OnnxScorer(ModelDir, Plan);
        var batch = new EventBatch(Plan, history.Count, scorer.OutputWidth);
        rows.Values.AsSpan(0, history.Count * Plan.FeatureCount).CopyTo(batch.Features);
        batch.OkCount = history.Count;
        scorer.Score(batch);
        var expected = Enumerable.Range(0, history.Count).ToDictionary(history.Id, k => batch.ScoreRow(k)[0]);

        var (ids, scores) = await ReplayRunner.ReadScoresAsync(path);
        var n = ids.Length;
        Assert.Equal(produced.Produced, n);
        for (var i = 0; i < n; i++) Assert.Equal(expected[ids[i]!], scores[i], 9);
        // Today's Redis would have put every merchant at fraud rate 1.0 and a million transactions: the same rows with those
        // lookup values score otherwise, so the equality above could not hold had the replay read them. (A bound on the mean
        // score would not do: the live world's fraud share follows the hour of the day.)
        var today = new EventBatch(Plan, history.Count, scorer.OutputWidth);
        rows.Values.AsSpan(0, history.Count * Plan.FeatureCount).CopyTo(today.Features);
        var rate = Plan.Features.ToList().FindIndex(f => f.Name == "merchant_fraud_rate_30d");
        var count = Plan.Features.ToList().FindIndex(f => f.Name == "merchant_log_txn_count_30d");
        for (var k = 0; k < history.Count; k++)
        {
            today.FeatureRow(k)[rate] = 1f;
            today.FeatureRow(k)[count] = (float)Math.Log(1 + 1e6);
        }
        today.OkCount = history.Count;
        scorer.Score(today);
        var todays = Enumerable.Range(0, history.Count).Select(k => today.ScoreRow(k)[0]).ToArray();
        var todayById = Enumerable.Range(0, history.Count).ToDictionary(history.Id, k => todays[k]);
        var moved = Enumerable.Range(0, n).Average(i => Math.Abs(todayById[ids[i]!] - scores[i]));
        output.WriteLine($"mean score: replayed {scores.Average():0.####}, with today's Redis {todays.Average():0.####}; mean |difference| {moved:0.####}");
        Assert.True(moved > 0.01, $"today's Redis would move the scores by {moved} on average only");

        // Bad requests fail clearly.
        var backwards = new ReplayRequest { BootstrapServers = services.BootstrapServers, Topic = input, From = "now", To = "beginning", ModelDirectory = ModelDir, OutputParquet = path };
        Assert.Contains("--to lies before --from", (await Assert.ThrowsAsync<ArgumentException>(() => ReplayRunner.RunAsync(backwards, Plan, Reader, registry))).Message);
        var checkpoint = Path.Combine(TempDir, "other.checkpoint");
        var first = new ReplayRequest { BootstrapServers = services.BootstrapServers, Topic = input, From = "beginning", To = "now", ModelDirectory = ModelDir, OutputTopic = input + "-out", CheckpointPath = checkpoint };
        if (services.Mock is { } mock) mock.CreateTopic(input + "-out", 1, 3);
        await ReplayRunner.RunAsync(first, Plan, Reader, registry);
        var again = await ReplayRunner.RunAsync(first, Plan, Reader, registry);    // finished: resumes at the end, writes nothing
        Assert.True(again.Resumed);
        Assert.Equal(0, again.Predictions);
        Assert.Equal(produced.Produced, again.SkippedAsDone);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => ReplayRunner.RunAsync(first with { From = "0:5" }, Plan, Reader, registry));
        Assert.Contains("belongs to another replay", e.Message);
    }

    /// <summary>
    /// replay --compare: a challenger scored on the same point-in-time vectors as the pinned model; the comparison over
    /// the run equals the one computed from the two models' scores of the batch path's vectors.
    /// </summary>
    [Fact]
    public async Task Replay_ComparesAChallenger_OnTheSameVectors()
    {
        var input = await services.CreateTopicAsync("payments", 2);
        var produced = await ProduceAsync(input, 1_500, seed: 303);
        var challengerDir = ModelRepository.Resolve(Path.Combine(Base, "models"), "fraud-gbm", "latest");
        using var registry = services.RegistryClient();
        var summary = await ReplayRunner.RunAsync(new ReplayRequest
        {
            BootstrapServers = services.BootstrapServers, Topic = input, From = "beginning", To = "now", ModelDirectory = ModelDir,
            OutputParquet = Path.Combine(TempDir, "compare.parquet"), CompareModelDirectory = challengerDir, CompareWindowEvents = 500,
        }, Plan, Reader, registry);
        var comparison = summary.Comparison!;
        Assert.Equal(produced.Produced, comparison.Overall.Events);
        Assert.Equal(3, comparison.Windows);
        Assert.StartsWith("fraud-gbm@", comparison.Overall.Challenger);

        var history = (await TopicHistory.ReadAsync(services.BootstrapServers, input, registry, Reader, Plan, labels: null)).History;
        var rows = PointInTimeFeatures.Compute(history, LookupTimeline.Compute(history, history.MaxTimeMs + 1));
        double[] ScoresOf(string dir)
        {
            using var scorer = new OnnxScorer(dir, Plan);
            var batch = new EventBatch(Plan, history.Count, scorer.OutputWidth);
            rows.Values.AsSpan(0, history.Count * Plan.FeatureCount).CopyTo(batch.Features);
            batch.OkCount = history.Count;
            scorer.Score(batch);
            return [.. Enumerable.Range(0, history.Count).Select(k => batch.ScoreRow(k)[scorer.PrimaryScoreIndex])];
        }
        var a = ScoresOf(ModelDir);
        var b = ScoresOf(challengerDir);
        Assert.Equal(ModelComparison.Spearman(a, b), comparison.Overall.RankCorrelation, 9);
        Assert.Equal(a.Zip(b).Count(p => p.First > 0.5 == p.Second > 0.5) / (double)a.Length, comparison.Overall.Agreement, 9);
        Assert.InRange(comparison.Overall.RankCorrelation, 0.3, 0.999);   // two fraud models: related, not the same
        output.WriteLine($"{comparison.Overall}");
    }

    private List<(string Key, byte[] Value)> ReadAll(string topic)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = services.BootstrapServers, GroupId = "read-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
            EnablePartitionEof = true,
        }).Build();
        consumer.Subscribe(topic);
        var records = new List<(string, byte[])>();
        var eof = new HashSet<int>();
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null) { if (eof.Count > 0 && eof.Count == consumer.Assignment.Count) break; continue; }
            if (r.IsPartitionEOF) { eof.Add(r.Partition.Value); if (eof.Count == consumer.Assignment.Count) break; continue; }
            eof.Remove(r.Partition.Value);
            records.Add((System.Text.Encoding.UTF8.GetString(r.Message.Key), r.Message.Value));
        }
        consumer.Close();
        return records;
    }

    /// <summary>
    /// A backtest (issue 19): a replay with the labels topic measures the replayed predictions by the live evaluation's
    /// code — its AUC equals a pairwise count over the written scores and the labels — and, with --compare, tests the
    /// champion against the challenger on the same labelled events.
    /// </summary>
    [Fact]
    public async Task ReplayWithLabels_IsABacktest_ByTheLiveEvaluationsCode()
    {
        var input = await services.CreateTopicAsync("payments", 2);
        var labelsTopic = await services.CreateTopicAsync("labels", 2);
        var produced = await services.ProduceAsync(new ProduceOptions { Topic = input, Events = 3_000, Seed = 1920, LabelsTopic = labelsTopic, LabelTimeScale = 0 });
        using var registry = services.RegistryClient();
        var labels = await LabelTopic.ReadAllAsync(services.BootstrapServers, registry, labelsTopic, CancellationToken.None);
        Assert.Equal(produced.Labels, labels.Count);
        var path = Path.Combine(TempDir, "backtest.parquet");
        var summary = await ReplayRunner.RunAsync(new ReplayRequest
        {
            BootstrapServers = services.BootstrapServers, Topic = input, From = "beginning", To = "now", ModelDirectory = ModelDir, OutputParquet = path,
            Labels = labels, CompareModelDirectory = ModelRepository.Resolve(Path.Combine(Base, "models"), "fraud-gbm", "latest"),
        }, Plan, Reader, registry);
        var evaluation = summary.Evaluation!;
        var metrics = Assert.Single(evaluation.ByModel).Value;

        var (ids, scores) = await ReplayRunner.ReadScoresAsync(path);
        var n = ids.Length;
        var labelled = Enumerable.Range(0, n).Where(i => labels.ContainsKey(ids[i]!)).Select(i => (Score: scores[i], Label: labels[ids[i]!] > 0.5)).ToList();
        double wins = 0;
        long pairs = 0;
        foreach (var p in labelled.Where(x => x.Label))
            foreach (var q in labelled.Where(x => !x.Label))
            {
                pairs++;
                wins += p.Score > q.Score ? 1 : p.Score == q.Score ? 0.5 : 0;
            }
        output.WriteLine($"backtest of {labelled.Count} labelled events ({labelled.Count(x => x.Label)} positive): AUC {metrics.Auc:0.0000}, " +
                         $"Brier {metrics.Brier:0.0000}; vs fraud-gbm: {evaluation.GateReason}");
        Assert.Equal(labelled.Count, metrics.Count);
        Assert.Equal(wins / pairs, metrics.Auc, 1e-9);
        Assert.Equal(labelled.Average(x => Math.Pow(x.Score - (x.Label ? 1 : 0), 2)), metrics.Brier, 1e-9);
        Assert.NotNull(evaluation.Compared);
        Assert.Equal(labelled.Count, evaluation.Compared!.Count);
        Assert.Equal(metrics.Auc, evaluation.Compared.ChampionAuc, 1e-12);
        Assert.NotNull(evaluation.Promote);
    }
}
