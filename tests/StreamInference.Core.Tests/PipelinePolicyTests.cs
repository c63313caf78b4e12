namespace StreamInference.Core.Tests;

/// <summary>
/// The pipeline's fault policies, with fake stages (pure logic): a model that fails to score, a feature
/// store that does not answer.
/// </summary>
public sealed class PipelinePolicyTests
{
    private static readonly FeaturePlan Plan = FeatureSetLoader.Parse("""
        featureSet: policy
        version: 1
        event: { idField: id, entityKeyField: user, timeField: ts }
        lookups:
          - name: profile
            entityField: user
            ttl: 1d
            refresh: 1h
            fields:
              - { name: count, function: count, window: 1d }
        features:
          - { name: amount, event: amount, default: -1 }
          - { name: count, lookup: profile.count, default: 7 }
        """);

    [Fact]
    public async Task ModelThatFailsTwice_DeadLettersTheBatchWithModelError_AndTheNextBatchIsScored()
    {
        var scorer = new FlakyScorer(failures: 2);
        var (sink, offsets) = await RunAsync(new PipelineOptions { MaxBatchSize = 4, MaxBatchDelay = TimeSpan.Zero }, scorer, new FakeStore(), records: 8);
        Assert.Equal(Enumerable.Repeat(DeadLetterReasons.ModelError, 4), sink.Reasons.Take(4));
        Assert.All(sink.Reasons.Skip(4), r => Assert.Null(r));
        Assert.Equal(8, offsets.Committable);   // dead letters complete their offsets too
        Assert.Equal(3, scorer.Calls);          // two failed attempts, then the next batch
    }

    [Fact]
    public async Task ModelThatFailsOnce_IsRetried_AndNothingIsDeadLettered()
    {
        var scorer = new FlakyScorer(failures: 1);
        var (sink, _) = await RunAsync(new PipelineOptions { MaxBatchSize = 4, MaxBatchDelay = TimeSpan.Zero }, scorer, new FakeStore(), records: 4);
        Assert.All(sink.Reasons, r => Assert.Null(r));
        Assert.Equal(2, scorer.Calls);
    }

    [Fact]
    public async Task ModelErrorWithStopPolicy_FailsThePipeline()
    {
        var options = new PipelineOptions { MaxBatchSize = 4, MaxBatchDelay = TimeSpan.Zero, DeadLetterOnModelError = false };
        var e = await Assert.ThrowsAsync<PipelineFatalException>(() => RunAsync(options, new FlakyScorer(failures: 2), new FakeStore(), records: 4));
        Assert.Contains("failed to score", e.Message);
        Assert.False(e.Restartable);
    }

    [Fact]
    public async Task StoreDown_DefaultsPolicy_ScoresWithDefaults_MarksTheBatch_AndSkipsTheStoreUntilTheProbe()
    {
        var store = new FakeStore { Down = true };
        var options = new PipelineOptions
        {
            MaxBatchSize = 2, MaxBatchDelay = TimeSpan.Zero,
            FeatureStoreFallbackAfter = TimeSpan.FromMilliseconds(100), FeatureStoreProbeInterval = TimeSpan.FromMinutes(1),
        };
        var scorer = new FlakyScorer(failures: 0);
        var (sink, _) = await RunAsync(options, scorer, store, records: 6);
        Assert.All(sink.Reasons, r => Assert.Null(r));
        Assert.Equal([true, true, true], sink.Degraded);
        Assert.All(scorer.Features, f => Assert.Equal(7f, f[1]));   // the lookup feature took its default
        // Two batches waited for the store and failed: the breaker opened, and the third skipped the store
        // until the probe interval.
        Assert.Equal(2, store.Calls);
    }

    [Fact]
    public async Task StoreDown_WaitPolicy_RetriesUntilItAnswers_NothingDegraded()
    {
        var store = new FakeStore { Down = true, UpAfterCalls = 3, Throws = true };
        var options = new PipelineOptions { MaxBatchSize = 2, MaxBatchDelay = TimeSpan.Zero, MaxRetryBackoff = TimeSpan.FromMilliseconds(20) };
        var (sink, _) = await RunAsync(options, new FlakyScorer(failures: 0), store, records: 4);
        Assert.Equal([false, false], sink.Degraded);
        Assert.True(store.Calls >= 4);
    }

    [Fact]
    public async Task RecordsComplete_OnlyAfterEveryExpectedAcknowledgement_IncludingAnExtraCondition()
    {
        // A batch's records complete after every acknowledgement it waits for: the messages the sink produced
        // and, here, one more condition (as a feature-state write would add) — and not before.
        var (sink, offsets, topology, run, observer) = await StartAsync(records: 4);
        sink.DeliverMessages();                  // every message acknowledged ...
        Assert.Equal(-1, offsets.Committable);   // ... but the extra condition is still open
        Assert.False(observer.Delivered.Task.IsCompleted);
        sink.AcknowledgeExtra(success: true);
        await observer.Delivered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(4, offsets.Committable);
        topology.Input.Complete();
        await run.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task RecordsComplete_OnlyWhenTheStateWriteIsPersisted_TooAfterAPersistFailureIsRetried()
    {
        // Write-behind: the batch is scored and published before its state write is acknowledged; its records
        // complete only once the persist stage got that acknowledgement (here after one failed attempt).
        var store = new PersistGateStore();
        var sink = new ExtraConditionSink();
        var topology = new PipelineTopology(new PipelineOptions { MaxBatchSize = 4, MaxBatchDelay = TimeSpan.Zero, MaxRetryBackoff = TimeSpan.FromMilliseconds(50) },
            Plan, new FakeDecoder(), store, new FlakyScorer(failures: 0), sink);
        var offsets = new PartitionOffsets("events", 0);
        var run = topology.RunAsync(CancellationToken.None);
        for (var i = 0; i < 4; i++) await topology.Input.WriteAsync(new InputRecord(offsets, offsets.Track(i), i, null, [1], 0, null));
        await sink.Published.Task.WaitAsync(TimeSpan.FromSeconds(30));
        sink.DeliverMessages();
        sink.AcknowledgeExtra(success: true);
        await store.FirstAttempt.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(-1, offsets.Committable);   // delivered, but the state write is not acknowledged
        store.Release.TrySetResult();            // the failed attempt is retried; the next one succeeds
        topology.Input.Complete();
        await run.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, store.Attempts);
        Assert.Equal(4, offsets.Committable);
    }

    [Fact]
    public async Task PersistBeforePublish_PublishesABatchOnlyAfterItsStateWrite()
    {
        // A transactional commit takes the watermarks standing when it commits its outputs: there the batch's state
        // write is settled before the batch is published, so once delivered its records are complete.
        var store = new PersistGateStore();
        var sink = new ExtraConditionSink();
        var observer = new BatchSignals();
        var topology = new PipelineTopology(new PipelineOptions
            {
                MaxBatchSize = 4, MaxBatchDelay = TimeSpan.Zero, MaxRetryBackoff = TimeSpan.FromMilliseconds(50), PersistBeforePublish = true,
            },
            Plan, new FakeDecoder(), store, new FlakyScorer(failures: 0), sink, observer);
        var offsets = new PartitionOffsets("events", 0);
        var run = topology.RunAsync(CancellationToken.None);
        for (var i = 0; i < 4; i++) await topology.Input.WriteAsync(new InputRecord(offsets, offsets.Track(i), i, null, [1], 0, null));
        await store.FirstAttempt.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(200);
        Assert.False(sink.Published.Task.IsCompleted, "published before its state write was acknowledged");
        store.Release.TrySetResult();            // the failed attempt is retried; the next one succeeds, then it is published
        await observer.Published.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, store.Attempts);
        sink.DeliverMessages();
        sink.AcknowledgeExtra(success: true);
        // Nothing else to wait for: the acknowledgements alone complete the batch, on this thread.
        Assert.True(observer.Delivered.Task.IsCompleted);
        Assert.Equal(4, offsets.Committable);
        topology.Input.Complete();
        await run.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task AFailedAcknowledgement_LeavesTheOffsetsIncomplete_AndFailsThePipelineRestartably()
    {
        var (sink, offsets, topology, run, _) = await StartAsync(records: 4);
        sink.DeliverMessages();
        sink.AcknowledgeExtra(success: false, "state write rejected");
        topology.Input.Complete();
        var e = await Assert.ThrowsAsync<PipelineFatalException>(() => run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("state write rejected", e.Message);
        Assert.True(e.Restartable);
        Assert.Equal(-1, offsets.Committable);
    }

    /// <summary>
    /// One batch of <paramref name="records"/> published to a sink that holds its acknowledgements. Returns once the
    /// pipeline has released its own count; the state write is settled before publishing, so from then on the batch
    /// waits for the sink's acknowledgements alone.
    /// </summary>
    private static async Task<(ExtraConditionSink Sink, PartitionOffsets Offsets, PipelineTopology Topology, Task Run, BatchSignals Observer)> StartAsync(int records)
    {
        var sink = new ExtraConditionSink();
        var observer = new BatchSignals();
        var topology = new PipelineTopology(new PipelineOptions { MaxBatchSize = records, MaxBatchDelay = TimeSpan.Zero, PersistBeforePublish = true },
            Plan, new FakeDecoder(), new FakeStore(), new FlakyScorer(failures: 0), sink, observer);
        var offsets = new PartitionOffsets("events", 0);
        var run = topology.RunAsync(CancellationToken.None);
        for (var i = 0; i < records; i++) await topology.Input.WriteAsync(new InputRecord(offsets, offsets.Track(i), i, null, [1], 0, null));
        await observer.Published.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return (sink, offsets, topology, run, observer);
    }

    /// <summary>
    /// Signals the first batch's publication (after the pipeline released its own count, which follows the sink's
    /// Publish) and its completion (every acknowledgement in, its offsets completed).
    /// </summary>
    private sealed class BatchSignals : IPipelineObserver
    {
        public TaskCompletionSource Published { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Delivered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich) { }
        public void OnBatchScored(EventBatch batch, TimeSpan score) { }
        public void OnBatchPublished(EventBatch batch, TimeSpan publish) => Published.TrySetResult();
        public void OnBatchDelivered(EventBatch batch, long nowMs) => Delivered.TrySetResult();
        public void OnRetry(string stage, Exception error) { }
    }

    private static async Task<(FakeSink Sink, PartitionOffsets Offsets)> RunAsync(PipelineOptions options, IScorer scorer, IFeatureStore store, int records)
    {
        var sink = new FakeSink();
        var topology = new PipelineTopology(options, Plan, new FakeDecoder(), store, scorer, sink);
        var offsets = new PartitionOffsets("events", 0);
        // Queued before the stages start, so batches are full-size whatever the timing (MaxBatchDelay may be zero).
        for (var i = 0; i < records; i++)
        {
            var record = new InputRecord(offsets, offsets.Track(i), i, null, [1], 1_700_000_000_000 + i, null);
            await topology.Input.WriteAsync(record);
        }
        topology.Input.Complete();
        await topology.RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        return (sink, offsets);
    }

    private sealed class FakeDecoder : IEventDecoder
    {
        public ValueTask DecodeAsync(EventBatch batch, CancellationToken cancellationToken)
        {
            for (var row = 0; row < batch.Count; row++)
            {
                batch.EntityKeys[row] = "user-" + (batch.Records[row].Offset % 3);
                batch.EventIds[row] = "e" + batch.Records[row].Offset;
                batch.EventTimesMs[row] = batch.Records[row].TimestampMs;
                batch.NumericRow(row).Fill(10);
            }
            return ValueTask.CompletedTask;
        }
    }

    private sealed class FakeStore : IFeatureStore
    {
        public bool Down { get; set; }
        public int UpAfterCalls { get; init; } = int.MaxValue;
        /// <summary>Fail fast (a client timeout) instead of hanging until cancelled.</summary>
        public bool Throws { get; init; }
        public int Calls { get; private set; }

        public async ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken)
        {
            Calls++;
            if (Calls > UpAfterCalls) Down = false;
            if (Down && Throws) throw new TimeoutException("store timed out");
            if (Down)
            {
                // Like a Redis client waiting on a dead connection: answers only when cancelled.
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            for (var k = 0; k < batch.OkCount; k++) batch.LookupRow(batch.Rows[k]).Fill(3);
        }
    }

    private sealed class FlakyScorer(int failures) : IScorer
    {
        private int _left = failures;
        public int Calls { get; private set; }
        public List<float[]> Features { get; } = [];
        public string ModelName => "fake";
        public string ModelVersion => "1";
        public int OutputWidth => 1;

        public void Score(EventBatch batch)
        {
            Calls++;
            if (_left-- > 0) throw new InvalidOperationException("model crashed");
            for (var k = 0; k < batch.OkCount; k++)
            {
                Features.Add(batch.FeatureRow(k).ToArray());
                batch.ScoreRow(k)[0] = 0.5;
            }
        }
    }

    private sealed class FakeSink : IPredictionSink
    {
        public List<string?> Reasons { get; } = [];
        public List<bool> Degraded { get; } = [];

        public void Publish(EventBatch batch)
        {
            batch.Completion.Expect(batch.Count);
            for (var row = 0; row < batch.Count; row++)
            {
                Reasons.Add(batch.DeadLetterReasons[row]);
                batch.Completion.Acknowledge(true);
            }
            Degraded.Add(batch.FeatureStoreUnavailable);
        }
    }

    /// <summary>A sink that waits for one more acknowledgement per batch than it produces messages, and holds them all until told.</summary>
    private sealed class ExtraConditionSink : IPredictionSink
    {
        private EventBatch? _batch;
        public TaskCompletionSource Published { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Publish(EventBatch batch)
        {
            _batch = batch;
            batch.Completion.Expect(batch.Count + 1);
            Published.TrySetResult();
        }

        public void DeliverMessages()
        {
            for (var i = 0; i < _batch!.Count; i++) _batch.Completion.Acknowledge(true);
        }

        public void AcknowledgeExtra(bool success, string? error = null) => _batch!.Completion.Acknowledge(success, error);
    }

    /// <summary>A store whose first state-write wait fails once released; every later one succeeds.</summary>
    private sealed class PersistGateStore : IFeatureStore
    {
        public TaskCompletionSource FirstAttempt { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Attempts { get; private set; }

        public ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public async ValueTask PersistAsync(EventBatch batch, CancellationToken cancellationToken)
        {
            if (++Attempts > 1) return;
            FirstAttempt.TrySetResult();
            await Release.Task.WaitAsync(cancellationToken);
            throw new TimeoutException("state write timed out");
        }
    }
}
