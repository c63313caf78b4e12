using Prometheus;

namespace StreamInference.IntegrationTests;

[Collection(ServicesCollection.Name)]
public sealed class PipelineTests(ServicesFixture services, ITestOutputHelper output)
{
    private static readonly FeaturePlan Plan = ServicesFixture.CardPaymentsPlan;

    private ProcessorOptions Options(ServicesFixture.Topics t, string? group = null, Action<PipelineSettings>? pipeline = null)
    {
        var o = services.ProcessorOptions(t, group);
        pipeline?.Invoke(o.Pipeline);
        return o;
    }

    private Task<InProcessProcessor> StartAsync(ProcessorOptions options) => ProcessorHarness.StartAsync(options, output);

    private Task<ProduceSummary> ProduceAsync(ServicesFixture.Topics t, int events, double badRate, int seed) =>
        services.ProduceAsync(new ProduceOptions { Topic = t.Input, Events = events, BadRate = badRate, Seed = seed });

    private static async Task WaitUntilAsync(Func<bool> done, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (!done() && sw.Elapsed < timeout) await Task.Delay(50);
    }

    private static readonly Dictionary<string, string> ExpectedReason = new()
    {
        ["wrong-magic-byte"] = DeadLetterReasons.WrongMagicByte,
        ["truncated-avro"] = DeadLetterReasons.MalformedAvro,
        ["unknown-schema-id"] = DeadLetterReasons.UnknownSchemaId,
        ["missing-entity-key"] = DeadLetterReasons.MissingEntityKey,
        ["empty-value"] = DeadLetterReasons.EmptyValue,
    };

    [Fact]
    public async Task Pipeline_PublishesDecodedPredictions_DeadLettersBadInput_AndLosesNothing()
    {
        output.WriteLine($"Kafka: {services.KafkaKind}; Redis: {services.RedisKind}");
        var topics = await services.CreateTopicsAsync(6);
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis))
            await WarmStart.MaterializeAsync(redis.GetDatabase(), Plan, events: 20_000);

        await using var running = await StartAsync(Options(topics));
        var produced = await ProduceAsync(topics, 3000, badRate: 0.03, seed: 11);
        Assert.Equal(0, produced.Failed);

        using var registry = services.RegistryClient();
        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);
        await WaitUntilAsync(() => audit.Predicted + audit.DeadLettered >= produced.Produced, TimeSpan.FromSeconds(90));
        await auditing.StopAsync();

        var bad = produced.Records.Count(r => r.BadKind is not null);
        Assert.True(bad > 30, $"the producer should have injected malformed records, injected {bad}");
        Assert.Equal(0L, audit.Duplicates);
        Assert.Equal(0L, audit.Undecodable);
        foreach (var r in produced.Records)
        {
            if (r.BadKind is null)
            {
                Assert.True(audit.Predictions.TryGetValue((r.Partition, r.Offset), out var eventId), $"no prediction for {r.Partition}/{r.Offset}");
                Assert.Equal(r.EventId, eventId);
            }
            else
            {
                Assert.True(audit.DeadLetters.TryGetValue((r.Partition, r.Offset), out var reason), $"no dead letter for {r.BadKind} at {r.Partition}/{r.Offset}");
                Assert.Equal(ExpectedReason[r.BadKind], reason);
            }
        }
        Assert.Equal(produced.Produced - bad, audit.Predicted);
        Assert.Equal(bad, audit.DeadLettered);

        // The processor's own accounting agrees, and every feature came from Redis (nothing defaulted).
        var metrics = running.Metrics;
        await WaitUntilAsync(() => metrics.PublishedCount + metrics.DeadLetteredCount >= produced.Produced, TimeSpan.FromSeconds(10));
        Assert.Equal(produced.Produced - bad, metrics.PublishedCount);
        Assert.Equal(bad, metrics.DeadLetteredCount);
    }

    [Fact]
    public async Task Predictions_CarryModelScoresAndFeatureFreshness()
    {
        var topics = await services.CreateTopicsAsync(2);
        // An empty feature store: every lookup and every window with no value over an empty window
        // (mean, min, max) takes its default, and each prediction says so. Tests in this collection run one at a time.
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis + ",allowAdmin=true"))
            await redis.GetServers()[0].FlushDatabaseAsync();
        await using var running = await StartAsync(Options(topics));
        var produced = await ProduceAsync(topics, 200, badRate: 0, seed: 90_001);

        using var registry = services.RegistryClient();
        var records = await ReadPredictionsAsync(registry, topics.Predictions, produced.Produced);
        Assert.Equal(produced.Produced, records.Count);
        foreach (var r in records)
        {
            Assert.Equal("fraud-gbm", r["model_name"]);
            Assert.Equal("1", r["model_version"]);
            var score = (double)r["score"];
            Assert.InRange(score, 0.0, 1.0);
            Assert.Equal(score > 0.5 ? "true" : "false", r["label"]);   // ML.NET's PredictedLabel agrees with the probability
            Assert.Equal(new object[] { score }, (object[])r["scores"]);
            Assert.StartsWith("card-", (string)r["entity_key"]);
            Assert.True((DateTime)r["scored_at"] >= (DateTime)r["event_time"]);
        }
        var emptyFeatures = Plan.Features.Count(f => f.Source == FeatureSourceKind.Lookup
            || (f.Source == FeatureSourceKind.Window && Plan.Windows[f.Slot].Function is not (AggregateFunction.Count or AggregateFunction.Sum)));
        Assert.All(records, r => Assert.Equal(emptyFeatures, (int)r["features_defaulted"]));
    }

    /// <summary>
    /// A queue of 8 records keeps filling. By default the consumer just stops reading while it is full
    /// (librdkafka keeps what it fetched ahead); with Kafka:PauseAfterMs=0 it pauses its partitions every
    /// time, which discards the fetched-ahead records and fetches them again. Either way nothing is lost.
    /// </summary>
    [Theory]
    [InlineData(1000)]
    [InlineData(0)]
    public async Task Backpressure_StopsConsumption_WhenPipelineIsFull_AndLosesNothing(int pauseAfterMs)
    {
        var topics = await services.CreateTopicsAsync(3);
        var options = Options(topics, pipeline: p =>
        {
            p.MaxBatchSize = 4;
            p.InputQueueCapacity = 8;
            p.MaxInFlightBatches = 2;
        });
        options.Kafka.PauseAfterMs = pauseAfterMs;
        await using var running = await StartAsync(options);
        var produced = await ProduceAsync(topics, 2000, badRate: 0.01, seed: 5);

        var metrics = running.Metrics;
        await WaitUntilAsync(() => metrics.PublishedCount + metrics.DeadLetteredCount >= produced.Produced, TimeSpan.FromSeconds(120));
        Assert.Equal(produced.Produced, metrics.PublishedCount + metrics.DeadLetteredCount);
        output.WriteLine($"backpressure: {metrics.Backpressured.Value}, pauses: {metrics.Pauses.Value}, batches: {metrics.Batches}");
        Assert.True(metrics.Backpressured.Value > 0, "a queue of 8 records must have filled");
        if (pauseAfterMs == 0) Assert.True(metrics.Pauses.Value > 0, "with Kafka:PauseAfterMs=0 a full queue pauses the partitions");
        Assert.True(metrics.BatchedRecords / (double)metrics.Batches <= 4);
    }

    [Fact]
    public async Task ConsumerGroup_SecondInstanceJoins_PartitionsAreShared_AndEveryRecordIsAccounted()
    {
        var topics = await services.CreateTopicsAsync(6);
        var group = ServicesFixture.NewGroup();
        var options = Options(topics, group, p => p.MaxInFlightBatches = 4);
        await using var first = await StartAsync(options);
        var a = await ProduceAsync(topics, 1500, badRate: 0.01, seed: 21);
        // Let the first wave be committed before the group rebalances: the embedded cluster rejects
        // every commit while a rebalance is pending (tens of seconds), so an uncommitted wave would be
        // re-processed whole and say nothing about the in-flight bound this test checks.
        Assert.True(await WaitForCommittedAsync(group, topics.Input, a.Records, TimeSpan.FromSeconds(60)),
            "the first instance did not commit the first wave within 60 s");
        await using var second = await StartAsync(Options(topics, group, p => p.MaxInFlightBatches = 4));
        await WaitUntilAsync(() => first.AssignedPartitions + second.AssignedPartitions == 6
                                   && first.AssignedPartitions > 0, TimeSpan.FromSeconds(30));
        output.WriteLine($"assignment: {first.AssignedPartitions} + {second.AssignedPartitions}");
        Assert.True(second.AssignedPartitions > 0, "the second instance got no partitions");
        var b = await ProduceAsync(topics, 1500, badRate: 0.01, seed: 22);

        using var registry = services.RegistryClient();
        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);
        var total = a.Produced + b.Produced;
        await WaitUntilAsync(() => audit.Predicted + audit.DeadLettered >= total, TimeSpan.FromSeconds(90));
        await second.StopAsync();
        await first.StopAsync();
        await Task.Delay(500);
        await auditing.StopAsync();

        var lost = audit.Unaccounted(a.Records.Concat(b.Records));
        Assert.Equal(0, lost);
        // A rebalance may re-process at most the in-flight window: 4 batches × 256 records per instance.
        Assert.InRange(audit.Duplicates, 0, 2 * 4 * 256);
        output.WriteLine($"duplicates after rebalance: {audit.Duplicates}");
    }

    private async Task<bool> WaitForCommittedAsync(string group, string topic, IReadOnlyList<ProducedRecord> records, TimeSpan timeout)
    {
        var expected = records.GroupBy(r => r.Partition)
            .ToDictionary(g => g.Key, g => g.Max(r => r.Offset) + 1);
        using var probe = new Confluent.Kafka.ConsumerBuilder<byte[], byte[]>(new Confluent.Kafka.ConsumerConfig
        {
            BootstrapServers = services.BootstrapServers,
            GroupId = group, // OffsetFetch only: this consumer never subscribes, so it does not join the group
        }).Build();
        var partitions = expected.Keys.Select(p => new Confluent.Kafka.TopicPartition(topic, p)).ToList();
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            var committed = probe.Committed(partitions, TimeSpan.FromSeconds(5));
            if (committed.All(c => c.Offset.Value >= expected[c.Partition.Value])) return true;
            await Task.Delay(200);
        }
        return false;
    }

    private Task<List<Avro.Generic.GenericRecord>> ReadPredictionsAsync(IAvroSchemaRegistry registry, string topic, int expected) =>
        PredictionReader.ReadAsync(services.BootstrapServers, registry, topic, expected);
}
