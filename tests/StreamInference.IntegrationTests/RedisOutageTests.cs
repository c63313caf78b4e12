using System.Globalization;
using StreamInference.DevServices.Redis;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The feature store goes away for 10 s in the middle of a run (its own redis-server process, stopped
/// and started again on the same port) while events keep arriving: each Redis:OnUnavailable policy does
/// what it says and processing recovers without a restart.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class RedisOutageTests(ServicesFixture services, ITestOutputHelper output)
{
    [Theory]
    [InlineData(FeatureStorePolicy.Wait)]
    [InlineData(FeatureStorePolicy.Defaults)]
    public async Task RedisStoppedFor10Seconds_NoCrash_PolicyHolds_AndProcessingRecovers(FeatureStorePolicy policy)
    {
        using var redis = new RestartableRedis();
        await redis.StartAsync();
        var topics = await services.CreateTopicsAsync(4);
        var options = services.ProcessorOptions(topics);
        options.Redis.Configuration = redis.Configuration;
        options.Redis.OnUnavailable = policy;
        options.Redis.FallbackAfterMs = 500;

        using var registry = services.RegistryClient();
        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);
        await using var processor = await ProcessorHarness.StartAsync(options, output);

        // 400 events/s for 30 s; Redis is down from 6 s to 16 s.
        var producing = Task.Run(() => services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = 12_000, Rate = 400, Seed = 1010 }));
        await Task.Delay(TimeSpan.FromSeconds(6));
        // Counted by the processor as Kafka acknowledges its outputs, not by the audit: the audit reads the output topics
        // a little behind, and at 400/s one second of its lag would count as records scored during the outage.
        long Accounted() => processor.Metrics.PublishedCount + processor.Metrics.DeadLetteredCount;
        var accountedBeforeOutage = Accounted();
        redis.Stop();
        var stoppedAt = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(10));
        var accountedDuringOutage = Accounted() - accountedBeforeOutage;
        processor.AssertRunning("the processor stopped while Redis was down");
        await redis.StartAsync();
        output.WriteLine($"Redis down for {stoppedAt.Elapsed.TotalSeconds:N1} s");
        var produced = await producing;

        await processor.WaitUntilAsync(() => audit.Predicted + audit.DeadLettered >= produced.Produced, TimeSpan.FromSeconds(90));
        var metrics = processor.Metrics;
        processor.AssertRunning("the processor stopped after Redis came back");
        await processor.StopAsync();
        await Task.Delay(500);
        await auditing.StopAsync();

        var lost = audit.Unaccounted(produced.Records);
        // The last 1,000 records were produced 11.5 s or more after Redis came back.
        var last = produced.Records.Skip(produced.Records.Count - 1000).ToList();
        var degradedAtEnd = last.Count(r => audit.Degraded.ContainsKey((r.Partition, r.Offset)));
        output.WriteLine($"{policy}: produced {produced.Produced}, predicted {audit.Predicted}, lost {lost}, duplicates {audit.Duplicates}, " +
                         $"accounted during the outage {accountedDuringOutage}, degraded {audit.Degraded.Count} (in the last 1,000: {degradedAtEnd}), " +
                         $"pauses {metrics.Pauses.Value}");
        Assert.Equal(0, lost);
        Assert.Equal(0, degradedAtEnd); // recovered: the store is used again
        if (policy == FeatureStorePolicy.Wait)
        {
            Assert.Empty(audit.Degraded);                        // nothing scored without its features
            Assert.True(accountedDuringOutage < 400, $"{accountedDuringOutage} records were scored while Redis was down"); // at most what was in flight
        }
        else
        {
            // Scoring went on through the outage, with defaults, and said so on each prediction.
            Assert.True(audit.Degraded.Count >= 2000, $"only {audit.Degraded.Count} degraded predictions during a 10 s outage at 400/s");
            Assert.All(audit.Degraded.Values, v => Assert.Equal(PredictionWriter.DegradedFeatureStore, v));
            Assert.True(accountedDuringOutage >= 2000, $"only {accountedDuringOutage} records scored during the outage");
        }
    }

    /// <summary>
    /// A stalled pipeline (the store down, Wait policy) pauses the consumer; the backlog produced after that shows in the
    /// consumer-lag gauges, though librdkafka fetches nothing for paused partitions (its cached high watermarks stop).
    /// </summary>
    [Fact]
    public async Task WhilePausedByBackpressure_TheLagGaugesFollowTheBacklog()
    {
        using var redis = new RestartableRedis();
        await redis.StartAsync();
        var topics = await services.CreateTopicsAsync(2);
        var options = services.ProcessorOptions(topics);
        options.Redis.Configuration = redis.Configuration;
        options.Redis.OnUnavailable = FeatureStorePolicy.Wait;
        options.Pipeline.InputQueueCapacity = 100;
        options.Kafka.PauseAfterMs = 200;
        await using var processor = await ProcessorHarness.StartAsync(options, output);
        var metrics = processor.Metrics;
        double Lag() => Enumerable.Range(0, 2).Sum(p => metrics.Lag.WithLabels(topics.Input, p.ToString(CultureInfo.InvariantCulture)).Value);

        redis.Stop();
        var before = await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = 500, Seed = 1011 });
        Assert.True(await processor.WaitUntilAsync(() => metrics.Paused.Value == 1, TimeSpan.FromSeconds(30)), "the consumer never paused");
        var lagAtPause = Lag();
        const int after = 3000;
        var produced = await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = after, Seed = 1012 });
        // Every record produced after the pause is unconsumed: the gauges grow by all of them (read every half second).
        var followed = await processor.WaitUntilAsync(() => Lag() >= lagAtPause + after, TimeSpan.FromSeconds(10));
        output.WriteLine($"lag at the pause {lagAtPause}, {after} produced after it, lag now {Lag()}; paused {metrics.Paused.Value}");
        Assert.True(followed, $"the lag gauges read {Lag()} with {after} records produced after the pause (at the pause: {lagAtPause})");
        Assert.Equal(1, metrics.Paused.Value);

        await redis.StartAsync();
        var total = before.Produced + produced.Produced;
        Assert.True(await processor.WaitUntilAsync(() => metrics.PublishedCount + metrics.DeadLetteredCount >= total, TimeSpan.FromSeconds(60)),
            $"{metrics.PublishedCount + metrics.DeadLetteredCount} of {total} accounted after Redis came back");
        Assert.True(await processor.WaitUntilAsync(() => Lag() == 0, TimeSpan.FromSeconds(10)), $"lag {Lag()} after the backlog was served");
    }

    /// <summary>A redis-server process (Garnet when redis-server is not installed) that can be stopped and started on the same port.</summary>
    private sealed class RestartableRedis : IDisposable
    {
        private readonly int _port = EmbeddedGarnet.FreePort();
        private LocalRedisServer? _server;
        private EmbeddedGarnet? _garnet;

        public string Configuration => $"127.0.0.1:{_port}";

        public async Task StartAsync()
        {
            if (_server is not null) await _server.StartAsync();
            else if (await LocalRedisServer.TryStartAsync(_port) is { } server) _server = server;
            else
            {
                _garnet = new EmbeddedGarnet(_port);
                await LocalRedisServer.WaitReadyAsync(Configuration, TimeSpan.FromSeconds(20));
            }
        }

        public void Stop()
        {
            _server?.Stop();
            _garnet?.Dispose();
            _garnet = null;
        }

        public void Dispose()
        {
            _server?.Dispose();
            _garnet?.Dispose();
        }
    }
}
