using System.Diagnostics;
using System.Threading.Channels;
using StreamInference.Core.Batching;
using Polly;
using StreamInference.Core.Features;
using StreamInference.Core.Offsets;
using StreamInference.Core.Resilience;

namespace StreamInference.Core.Pipeline;

/// <summary>
/// The one place where the stages and the channels between them are wired:
/// <code>
///  consume thread ─[input: InputRecord]─▶ batch stage ─[ready: EventBatch]─▶ score stage ─▶ sink ─▶ (delivery) ──┐
///                                         batch + decode + enrich + assemble    score + encode + publish               ├─▶ offsets
///                                              └──────────[persist: EventBatch]─▶ persist stage (state write acked) ──┘
/// </code>
/// Queues exist only where concurrency or batching changes: the consumer blocks in Consume on its own
/// thread, the batch stage awaits Redis's reads, the score stage runs the model, the persist stage awaits the
/// feature-state writes the batch stage sent (write-behind). A batch's records complete when both its
/// deliveries and its state write are acknowledged. Stages within one box call each other directly.
/// </summary>
public sealed class PipelineTopology
{
    private readonly PipelineOptions _options;
    private readonly IEventDecoder _decoder;
    private readonly IFeatureStore _featureStore;
    private readonly FeatureVectorAssembler _assembler;
    private readonly IScorer _scorer;
    private readonly IPredictionSink _sink;
    private readonly IPipelineObserver _observer;
    private readonly TimeProvider _time;
    // Redis: Wait policy = retry until it answers; Defaults policy = retry within the fallback budget, then
    // defaults, and a breaker that skips the store while it keeps failing (Backoffs, Policies).
    private readonly ResiliencePipeline _storeCalls;
    // The same policy for the wait on a batch's state write (its own breaker; retries counted as stage "persist").
    private readonly ResiliencePipeline _persistCalls;
    // The model: one immediate retry, then the model-error policy.
    private readonly ResiliencePipeline _scoreCalls;

    // Input: single writer (the consume thread, via TryWrite: on failure it stops reading, and pauses its partitions if that lasts),
    // single reader (the batch stage). Bounded so a slow model or Redis stops consumption instead of
    // growing memory.
    private readonly Channel<InputRecord> _input;
    // Ready: written by the batch stage, read by the score stage. Small: it only overlaps the next
    // batch's Redis round trip with the current batch's scoring.
    private readonly Channel<EventBatch> _ready;
    // Persist: written by the batch stage in fetch order, read by the persist stage (the store settles writes in that order).
    private readonly Channel<EventBatch> _persist;
    // Free batches. A batch returns here only when the producer acknowledged all its messages, so
    // the pool size bounds the records in flight between consume and acknowledgement.
    private readonly Channel<EventBatch> _free;
    private readonly int _batchCount;
    private int _outstanding;
    private readonly TaskCompletionSource _allReturned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _inputDone;
    private Exception? _deliveryFailure;

    public PipelineTopology(
        PipelineOptions options,
        FeaturePlan plan,
        IEventDecoder decoder,
        IFeatureStore featureStore,
        IScorer scorer,
        IPredictionSink sink,
        IPipelineObserver? observer = null,
        TimeProvider? timeProvider = null)
    {
        Validate(options);
        _options = options;
        _decoder = decoder;
        _featureStore = featureStore;
        _assembler = new FeatureVectorAssembler(plan);
        _scorer = scorer;
        _sink = sink;
        _observer = observer ?? NullPipelineObserver.Instance;
        _time = timeProvider ?? TimeProvider.System;
        var storeBackoff = Backoffs.FeatureStore with { Max = options.MaxRetryBackoff };
        _storeCalls = options.FeatureStoreFallbackAfter is { } budget
            ? Policies.RetryThenBreak(budget, options.FeatureStoreProbeInterval, storeBackoff, IsRetriable, _time, OnStoreRetry)
            : Policies.Retry(storeBackoff, IsRetriable, _time, OnStoreRetry);
        _persistCalls = options.FeatureStoreFallbackAfter is { } persistBudget
            ? Policies.RetryThenBreak(persistBudget, options.FeatureStoreProbeInterval, storeBackoff, IsRetriable, _time, OnPersistRetry)
            : Policies.Retry(storeBackoff, IsRetriable, _time, OnPersistRetry);
        _scoreCalls = Policies.Retry(Backoffs.ModelScore, static _ => true, _time, (e, _, _) => _observer.OnRetry("score", e));

        _input = Channel.CreateBounded<InputRecord>(new BoundedChannelOptions(options.InputQueueCapacity)
        {
            SingleWriter = true,
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _ready = Channel.CreateBounded<EventBatch>(new BoundedChannelOptions(2)
        {
            SingleWriter = true,
            SingleReader = true,
        });
        _batchCount = options.MaxInFlightBatches;
        _persist = Channel.CreateBounded<EventBatch>(new BoundedChannelOptions(_batchCount)
        {
            SingleWriter = true,
            SingleReader = true,
        });
        _free = Channel.CreateBounded<EventBatch>(_batchCount);
        for (var i = 0; i < _batchCount; i++)
        {
            var batch = new EventBatch(plan, options.MaxBatchSize, scorer.OutputWidth) { DeliveryCompleted = OnDeliveryCompleted };
            _free.Writer.TryWrite(batch);
        }
    }

    /// <summary>Where the consumer writes records. <c>TryWrite</c> failing means: pause and retry later.</summary>
    public ChannelWriter<InputRecord> Input => _input.Writer;

    /// <summary>Records waiting in the input queue.</summary>
    public int QueuedRecords => _input.Reader.Count;

    /// <summary>Batches between the batcher and the producer's acknowledgement.</summary>
    public int InFlightBatches => Volatile.Read(ref _outstanding);

    /// <summary>
    /// Runs both stages until the input is completed and every record was published and acknowledged.
    /// Faults with <see cref="PipelineFatalException"/> when a delivery fails or a stage cannot go on.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var batchStage = Task.Run(() => BatchStageAsync(linked.Token), CancellationToken.None);
        var scoreStage = Task.Run(() => ScoreStageAsync(linked.Token), CancellationToken.None);
        var persistStage = Task.Run(() => PersistStageAsync(linked.Token), CancellationToken.None);
        try
        {
            var first = await Task.WhenAny(batchStage, scoreStage, persistStage).ConfigureAwait(false);
            if (first.IsFaulted) await linked.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(batchStage, scoreStage, persistStage).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch
        {
            _input.Writer.TryComplete();
            throw;
        }
        _inputDone = true;
        // A full fence: a volatile store followed by a load may still be reordered, and the last batch returning on
        // another thread (decrement, then read _inputDone) would then miss this flag while this read misses its
        // decrement, and the run would wait for ever (seen once: a unit test's run did not end in 30 s).
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _outstanding) == 0) _allReturned.TrySetResult();
        await _allReturned.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (_deliveryFailure is not null) throw _deliveryFailure;
    }

    private async Task BatchStageAsync(CancellationToken ct)
    {
        var batcher = new MicroBatcher<InputRecord>(_input.Reader, _options.MaxBatchSize, _options.MaxBatchDelay, _time);
        try
        {
            while (true)
            {
                ThrowIfDeliveryFailed();
                var batch = await _free.Reader.ReadAsync(ct).ConfigureAwait(false);
                Interlocked.Increment(ref _outstanding);
                batch.Completion.Begin();
                var n = await batcher.FillAsync(batch.Records, ct).ConfigureAwait(false);
                if (n == 0)
                {
                    Return(batch);
                    break;
                }
                batch.Count = n;
                batch.FlushedAt = Stopwatch.GetTimestamp();

                await _decoder.DecodeAsync(batch, ct).ConfigureAwait(false);
                batch.CollectCleanRows();
                var decoded = Stopwatch.GetTimestamp();

                if (batch.OkCount > 0)
                {
                    await FetchFeaturesAsync(batch, ct).ConfigureAwait(false);
                    for (var k = 0; k < batch.OkCount; k++)
                    {
                        var row = batch.Rows[k];
                        batch.DefaultedCounts[row] = _assembler.Assemble(
                            batch.NumericRow(row), batch.TextRow(row), batch.WindowRow(row), batch.LookupRow(row),
                            batch.FeatureRow(k), batch.DefaultedPerFeature, out batch.DefaultedMasks[row]);
                    }
                }
                var enriched = Stopwatch.GetTimestamp();
                _observer.OnBatchAssembled(batch,
                    Stopwatch.GetElapsedTime(batch.FlushedAt, decoded),
                    Stopwatch.GetElapsedTime(decoded, enriched));
                if (batch.OkCount > 0 && _options.PersistBeforePublish)
                {
                    await PersistAsync(batch, ct).ConfigureAwait(false);
                }
                else if (batch.OkCount > 0)
                {
                    // Never blocks: the channel holds as many batches as the pool.
                    batch.Completion.Expect(1);
                    _persist.Writer.TryWrite(batch);
                }
                await _ready.Writer.WriteAsync(batch, ct).ConfigureAwait(false);
            }
            _ready.Writer.TryComplete();
            _persist.Writer.TryComplete();
        }
        catch (Exception e)
        {
            _ready.Writer.TryComplete(e);
            _persist.Writer.TryComplete(e);
            throw;
        }
    }

    private async Task PersistStageAsync(CancellationToken ct)
    {
        await foreach (var batch in _persist.Reader.ReadAllAsync(ct).ConfigureAwait(false))
        {
            await PersistAsync(batch, ct).ConfigureAwait(false);
            batch.Completion.Acknowledge(true);
        }
    }

    /// <summary>Waits for the batch's feature-state write (retried; given up under the Defaults policy).</summary>
    private async Task PersistAsync(EventBatch batch, CancellationToken ct)
    {
        try
        {
            await _persistCalls.ExecuteAsync(static (s, token) => s.Store.PersistAsync(s.Batch, token), (Store: _featureStore, Batch: batch), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (Policies.IsDegraded(e) && !ct.IsCancellationRequested)
        {
            // Defaults policy: Redis did not take the write in time. As with a fetch that falls back to
            // defaults, the events may be missing from their windows; the records are not held back.
            _featureStore.Abandon(batch);
        }
    }

    private async Task FetchFeaturesAsync(EventBatch batch, CancellationToken ct)
    {
        try
        {
            await _storeCalls.ExecuteAsync(static (s, token) => s.Store.FetchAsync(s.Batch, token), (Store: _featureStore, Batch: batch), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (Policies.IsDegraded(e) && !ct.IsCancellationRequested)
        {
            // Defaults policy: the store did not answer within FeatureStoreFallbackAfter, or the breaker is
            // open (it keeps failing): score with the store's features at their defaults.
            UseDefaults(batch);
        }
    }

    private static void UseDefaults(EventBatch batch)
    {
        for (var k = 0; k < batch.OkCount; k++)
        {
            var row = batch.Rows[k];
            batch.WindowRow(row).Fill(double.NaN);
            batch.LookupRow(row).Fill(double.NaN);
        }
        batch.FeatureStoreUnavailable = true;
    }

    private async Task ScoreStageAsync(CancellationToken ct)
    {
        await foreach (var batch in _ready.Reader.ReadAllAsync(ct).ConfigureAwait(false))
        {
            ThrowIfDeliveryFailed();
            var start = Stopwatch.GetTimestamp();
            if (batch.OkCount > 0) ScoreOrDeadLetter(batch);
            batch.ScoredAtMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
            var scored = Stopwatch.GetTimestamp();
            _observer.OnBatchScored(batch, Stopwatch.GetElapsedTime(start, scored));
            _sink.Publish(batch);
            batch.Completion.Release();
            _observer.OnBatchPublished(batch, Stopwatch.GetElapsedTime(scored));
        }
    }

    private void ScoreOrDeadLetter(EventBatch batch)
    {
        try
        {
            _scoreCalls.Execute(static s => s.Scorer.Score(s.Batch), (Scorer: _scorer, Batch: batch));
        }
        catch (Exception error) when (error is not OperationCanceledException)
        {
            _observer.OnRetry("score", error);   // the last failure counts too: two per failing batch, as attempted
            var what = $"model {_scorer.ModelName}@{_scorer.ModelVersion} failed to score a batch of {batch.OkCount} twice: {error.Message}";
            if (!_options.DeadLetterOnModelError) throw new PipelineFatalException(what, error);
            // The records go to the dead-letter topic with the reason, to be replayed once the model is fixed.
            for (var k = 0; k < batch.OkCount; k++) batch.DeadLetter(batch.Rows[k], DeadLetterReasons.ModelError, what);
            batch.OkCount = 0;
        }
    }

    // Runs on the producer's delivery thread, or the persist stage's when the state write is acknowledged last.
    private void OnDeliveryCompleted(EventBatch batch)
    {
        if (batch.Completion.Failed)
        {
            // Offsets of this batch are not stored: after the restart that this failure causes, the
            // records are consumed again (at-least-once).
            _deliveryFailure ??= new PipelineFatalException($"Publishing failed: {batch.Completion.Error}", restartable: true);
        }
        else
        {
            for (var i = 0; i < batch.Count; i++)
            {
                ref readonly var r = ref batch.Records[i];
                (r.Partition as PartitionOffsets)?.Complete(r.Sequence);
            }
            _observer.OnBatchDelivered(batch, _time.GetUtcNow().ToUnixTimeMilliseconds());
        }
        batch.Reset();
        Return(batch);
    }

    private void Return(EventBatch batch)
    {
        _free.Writer.TryWrite(batch);
        if (Interlocked.Decrement(ref _outstanding) == 0 && _inputDone) _allReturned.TrySetResult();
    }

    private void ThrowIfDeliveryFailed()
    {
        if (_deliveryFailure is { } e) throw e;
    }

    // Retriable (Redis timeout, connection loss). Under the Wait policy waiting fills the input queue, which
    // stops consumption: nothing is lost and nothing spins.
    private static bool IsRetriable(Exception e) => e is not PipelineFatalException;

    private void OnStoreRetry(Exception e, int attempt, TimeSpan delay) => _observer.OnRetry("enrich", e);

    private void OnPersistRetry(Exception e, int attempt, TimeSpan delay) => _observer.OnRetry("persist", e);

    private static void Validate(PipelineOptions o)
    {
        if (o.MaxBatchSize < 1) throw new ArgumentException("MaxBatchSize must be at least 1.", nameof(o));
        if (o.MaxBatchDelay < TimeSpan.Zero) throw new ArgumentException("MaxBatchDelay must not be negative.", nameof(o));
        if (o.InputQueueCapacity < 1) throw new ArgumentException("InputQueueCapacity must be at least 1.", nameof(o));
        if (o.MaxInFlightBatches < 2) throw new ArgumentException("MaxInFlightBatches must be at least 2.", nameof(o));
    }
}
