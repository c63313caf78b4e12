using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Prometheus;
using StreamInference.Core.Diagnostics;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Metrics;

/// <summary>
/// The processor's Prometheus metrics (names <c>streaminference_*</c>, bounded labels only) and the
/// in-process counters the live view reads. Labelled children are resolved once, never per message.
/// </summary>
public sealed partial class ProcessorMetrics : IPipelineObserver
{
    private static readonly double[] BatchBuckets = Histogram.ExponentialBuckets(1, 2, 13);        // 1 .. 4096
    private static readonly double[] StageBuckets = Histogram.ExponentialBuckets(0.00005, 2, 16);  // 50 µs .. 1.6 s
    private static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.0005, 2, 16); // 0.5 ms .. 16 s

    private readonly ILogger _log;
    private readonly Counter.Child _published;
    private readonly Dictionary<string, Counter.Child> _deadLetters = [];
    private readonly Counter _deadLetterFamily;
    private readonly Histogram.Child _decode, _enrich, _score, _publish;
    private readonly Histogram _batchSize;
    private readonly Histogram _eventToPrediction;
    private readonly Counter.Child[] _defaulted;
    private readonly Counter _late;
    private readonly Counter _redelivered;
    private readonly Counter _stale;
    private long _lateCount;
    private long _redeliveredCount;
    private readonly Counter _retries;
    private readonly Counter _degraded;
    private long _publishedCount, _deadLetteredCount, _batches, _batchRecords;

    private readonly IMetricFactory _factory;

    /// <summary>streaminference_shadow_predictions_total{model, result}.</summary>
    public Counter ShadowPredictions { get; }

    public ProcessorMetrics(IMetricFactory factory, FeaturePlan plan, string inputTopic, string outputTopic, ILogger log)
    {
        _log = log;
        _factory = factory;
        var swaps = factory.CreateCounter("streaminference_model_swaps_total",
            "New model versions found in the repository: loaded (and swapped in) or rejected.", ["result"]);
        // Both series exist from the start, so increase() sees the first rejection.
        _swapsLoaded = swaps.WithLabels("loaded");
        _swapsRejected = swaps.WithLabels("rejected");
        Consumed = factory.CreateCounter("streaminference_records_consumed_total", "Records consumed from the input topic(s).", ["topic"]).WithLabels(inputTopic);
        _published = factory.CreateCounter("streaminference_predictions_published_total", "Prediction records acknowledged by the broker.", ["topic"]).WithLabels(outputTopic);
        _deadLetterFamily = factory.CreateCounter("streaminference_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"]);
        foreach (var r in DeadLetterReasons.All) _deadLetters[r] = _deadLetterFamily.WithLabels(r);
        _batchSize = factory.CreateHistogram("streaminference_batch_size", "Records per micro-batch.", new HistogramConfiguration { Buckets = BatchBuckets });
        var stages = factory.CreateHistogram("streaminference_stage_duration_seconds", "Time per batch spent in each stage.",
            new HistogramConfiguration { LabelNames = ["stage"], Buckets = StageBuckets });
        _decode = stages.WithLabels("decode");
        _enrich = stages.WithLabels("enrich");
        _score = stages.WithLabels("score");
        _publish = stages.WithLabels("publish");
        _eventToPrediction = factory.CreateHistogram("streaminference_event_to_prediction_seconds",
            "From the input record's timestamp to the broker's acknowledgement of its prediction.", new HistogramConfiguration { Buckets = LatencyBuckets });
        var defaulted = factory.CreateCounter("streaminference_features_defaulted_total", "Feature values that were missing or stale and took their default.", ["feature"]);
        _defaulted = plan.Features.Select(f => defaulted.WithLabels(f.Name)).ToArray();
        _late = factory.CreateCounter("streaminference_window_late_events_total", "Events too late (beyond event.allowedLateness) to be added to the windowed aggregates; scored all the same.");
        _redelivered = factory.CreateCounter("streaminference_window_redelivered_events_total", "Redelivered events whose window update had already been applied (skipped, so aggregates stay exact).");
        _stale = factory.CreateCounter("streaminference_lookup_stale_total", "Materialized lookup values found but older than their TTL or newer than the event; the features took their defaults.");
        _degraded = factory.CreateCounter("streaminference_degraded_records_total",
            "Records scored with degraded features (reason feature-store-unavailable: Redis:OnUnavailable=Defaults).", ["reason"]);
        _degraded.WithLabels("feature-store-unavailable");   // exported at 0 from the start
        _retries = factory.CreateCounter("streaminference_stage_retries_total", "Retriable failures inside a stage (e.g. Redis unavailable).", ["stage"]);
        foreach (var stage in new[] { "decode", "enrich", "persist", "score" }) _retries.WithLabels(stage);   // the stages that retry, exported at 0 from the start
        AssignedPartitions = factory.CreateGauge("streaminference_consumer_assigned_partitions", "Input partitions currently assigned to this instance.");
        Lag = factory.CreateGauge("streaminference_consumer_lag", "High watermark minus consumer position, per assigned partition.", ["topic", "partition"]);
        RefetchedSkipped = factory.CreateCounter("streaminference_consumer_refetched_skipped_total",
            "Records the Kafka client handed over again at offsets this process had already taken (skipped).");
        ShadowPredictions = factory.CreateCounter("streaminference_shadow_predictions_total",
            "Shadow model predictions by model and result: delivered, or failed (best effort: a failure never touches the champion's output).", ["model", "result"]);
        Pauses = factory.CreateCounter("streaminference_consumer_pauses_total", "Times the consumer paused its partitions because the pipeline stayed full (Kafka:PauseAfterMs).");
        var windowUpdates = factory.CreateCounter("streaminference_window_state_updates_total",
            "Entity window-state updates per path: cached = computed from the state kept since the entity's last batch and written conditionally; " +
            "read = the state was read from Redis (first sight of the entity, cache full, partitions assigned, or another writer changed it); " +
            "conflict = a cached update Redis refused (another writer changed the entity) or whose reply was lost, re-applied from Redis's state " +
            "(with write-behind those events were scored on the cached state).", ["path"]);
        _windowCached = windowUpdates.WithLabels("cached");
        _windowRead = windowUpdates.WithLabels("read");
        _windowConflict = windowUpdates.WithLabels("conflict");
        Backpressured = factory.CreateCounter("streaminference_consumer_backpressure_total", "Times the consumer stopped reading because the pipeline's input queue was full.");
        Paused = factory.CreateGauge("streaminference_consumer_paused", "1 while the consumer is paused by backpressure.");
        ModelInfo = factory.CreateGauge("streaminference_model_info", "The model being served (value 1).", ["model", "version"]);
        DeliveryFailures = factory.CreateCounter("streaminference_delivery_failures_total", "Messages the producer failed to deliver.");
    }

    public Counter.Child Consumed { get; }
    public Gauge Lag { get; }
    public Counter RefetchedSkipped { get; }
    public Counter Backpressured { get; }
    public Gauge AssignedPartitions { get; }
    private readonly Counter.Child _windowCached;
    private readonly Counter.Child _windowRead;
    private readonly Counter.Child _windowConflict;

    public void OnWindowStateUpdate(long cached, long read, long conflicts)
    {
        if (cached > 0) _windowCached.Inc(cached);
        if (read > 0) _windowRead.Inc(read);
        if (conflicts > 0) _windowConflict.Inc(conflicts);
    }
    public Counter Pauses { get; }
    public Gauge Paused { get; }
    public Gauge ModelInfo { get; }
    public Counter DeliveryFailures { get; }

    /// <summary>In-process restarts; created by the supervisor before any run's metrics.</summary>
    public static Counter Restarts(IMetricFactory factory) =>
        factory.CreateCounter("streaminference_restarts_total", "In-process restarts of the processor after a restartable failure.");

    /// <summary>Drift monitoring's series (when it is on).</summary>
    public DriftMetrics Drift() => new(
        _factory.CreateGauge("streaminference_drift", "Drift statistic of the last closed window, per model (name@version), its role and feature ('prediction' = the score).", ["model", "role", "feature", "statistic"]),
        _factory.CreateGauge("streaminference_drift_severity", "Drift severity of the last closed window per model, role and feature: 0 ok, 1 warn, 2 alert.", ["model", "role", "feature"]),
        _factory.CreateCounter("streaminference_drift_windows_total", "Drift windows closed and reported."),
        _factory.CreateCounter("streaminference_drift_publish_failures_total", "Drift reports the producer failed to deliver."));

    /// <summary>The model a run serves, where it runs, and the batch size the pipeline forms.</summary>
    public void OnModelLoaded(string name, string version, string provider, bool fellBack, int batchLimit)
    {
        ModelInfo.WithLabels(name, version).Set(1);
        _factory.CreateGauge("streaminference_model_execution_provider",
                "Where the model runs (value 1): cpu or cuda:<id>; fallback=\"true\" when Model:Device=auto could not use CUDA.", ["provider", "fallback"])
            .WithLabels(provider, fellBack ? "true" : "false").Set(1);
        _factory.CreateGauge("streaminference_model_execution_fallback",
            "1 when Model:Device=auto asked for CUDA and the model runs on the CPU instead, else 0.").Set(fellBack ? 1 : 0);
        _factory.CreateGauge("streaminference_batch_size_limit",
            "Largest micro-batch the pipeline forms: Pipeline:MaxBatchSize, or what Model:AutotuneBatchSize chose below it.").Set(batchLimit);
    }

    /// <summary>What the batch-size autotune measured at model load.</summary>
    public void OnAutotuned(IEnumerable<(int BatchSize, double EventsPerSecond)> measurements)
    {
        var measured = _factory.CreateGauge("streaminference_autotune_events_per_second",
            "Scoring throughput the batch-size autotune measured at model load, per batch size.", ["batch_size"]);
        foreach (var (size, rate) in measurements)
            measured.WithLabels(size.ToString(System.Globalization.CultureInfo.InvariantCulture)).Set(rate);
    }

    /// <summary>A new model version was swapped in (or rejected).</summary>
    public void OnModelSwapped(string previousName, string previousVersion, string name, string version)
    {
        ModelInfo.WithLabels(previousName, previousVersion).Set(0);
        ModelInfo.WithLabels(name, version).Set(1);
        _swapsLoaded.Inc();
    }

    public void OnModelRejected() => _swapsRejected.Inc();

    private readonly Counter.Child _swapsLoaded;
    private readonly Counter.Child _swapsRejected;

    /// <summary>Event-to-prediction latency for percentiles in live views.</summary>
    public LatencyRecorder Latency { get; } = new();

    public long PublishedCount => Interlocked.Read(ref _publishedCount);
    public long LateCount => Interlocked.Read(ref _lateCount);
    public long RedeliveredCount => Interlocked.Read(ref _redeliveredCount);
    public long DeadLetteredCount => Interlocked.Read(ref _deadLetteredCount);
    public long Batches => Interlocked.Read(ref _batches);
    public long BatchedRecords => Interlocked.Read(ref _batchRecords);

    public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich)
    {
        _batchSize.Observe(batch.Count);
        if (batch.FeatureStoreUnavailable) _degraded.WithLabels("feature-store-unavailable").Inc(batch.OkCount);
        _decode.Observe(decode.TotalSeconds);
        _enrich.Observe(enrich.TotalSeconds);
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _batchRecords, batch.Count);
        if (batch.LateEvents > 0) { _late.Inc(batch.LateEvents); Interlocked.Add(ref _lateCount, batch.LateEvents); }
        if (batch.RedeliveredEvents > 0) { _redelivered.Inc(batch.RedeliveredEvents); Interlocked.Add(ref _redeliveredCount, batch.RedeliveredEvents); }
        if (batch.StaleLookups > 0) _stale.Inc(batch.StaleLookups);
        var perFeature = batch.DefaultedPerFeature;
        for (var i = 0; i < perFeature.Length; i++)
            if (perFeature[i] > 0) _defaulted[i].Inc(perFeature[i]);
    }

    public void OnBatchScored(EventBatch batch, TimeSpan score) => _score.Observe(score.TotalSeconds);

    public void OnBatchPublished(EventBatch batch, TimeSpan publish) => _publish.Observe(publish.TotalSeconds);

    public void OnBatchDelivered(EventBatch batch, long nowMs)
    {
        var dead = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            if (batch.DeadLetterReasons[i] is { } reason)
            {
                dead++;
                if (!_deadLetters.TryGetValue(reason, out var c)) c = _deadLetterFamily.WithLabels(reason);
                c.Inc();
                continue;
            }
            var ms = nowMs - batch.Records[i].TimestampMs;
            if (ms < 0) ms = 0;
            _eventToPrediction.Observe(ms / 1000.0);
            Latency.RecordMicroseconds(ms * 1000);
        }
        _published.Inc(batch.Count - dead);
        Interlocked.Add(ref _publishedCount, batch.Count - dead);
        Interlocked.Add(ref _deadLetteredCount, dead);
    }

    public void OnRetry(string stage, Exception error)
    {
        _retries.WithLabels(stage).Inc();
        Log.StageRetry(_log, stage, error.Message);
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Warning, Message = "Stage {Stage} failed and will retry: {Reason}")]
        public static partial void StageRetry(ILogger logger, string stage, string reason);
    }
}

/// <summary>Drift monitoring's series: statistic and severity per feature of the last window, windows closed, reports lost.</summary>
public sealed record DriftMetrics(Gauge Statistic, Gauge Severity, Counter Windows, Counter PublishFailures);
