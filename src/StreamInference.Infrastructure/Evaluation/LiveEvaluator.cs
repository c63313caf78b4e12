using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Processing;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Evaluation;

/// <summary>
/// <c>streaminference evaluate</c>: a consumer group of its own over the prediction topic, the shadow topic and the
/// labels topic. Each record goes through the label join in Redis (<see cref="RedisLabelJoin"/>), and what it joins
/// into the event-time windows in Redis (<see cref="RedisEvaluationWindows"/>); both are idempotent, so offsets are
/// stored after a batch's Redis writes are acknowledged (at least once) and a record redelivered after a crash
/// changes nothing. Final windows are reported (Avro on <c>Evaluation:Topic</c>, Prometheus) by whichever instance
/// sees them final first; label-arrival windows are this instance's own (in memory). It scales by partitions: the
/// state is keyed by event and window, not by the instance that wrote it.
/// </summary>
public sealed partial class LiveEvaluator
{
    private const int MaxBatch = 1000;
    private readonly ProcessorOptions _options;
    private readonly EvaluationOptions _settings;
    private readonly IAvroSchemaRegistry _registry;
    private readonly Func<string, double?> _referenceAuc;
    private readonly ILogger _log;
    private readonly RedisLabelJoin _join;
    private readonly EvaluationWindows _arrival;
    private readonly EvaluationTelemetry _telemetry;
    private readonly Dictionary<int, AvroSchema> _writers = [];
    private readonly List<EvaluatedWindow> _pendingArrival = [];
    private readonly string _predictionsTopic;
    private readonly string _shadowTopic;
    private IProducer<byte[], byte[]>? _producer;
    private int _reportSchemaId;
    private long _processed;
    private long _lag = -1;

    /// <param name="horizonMs">How long, in event time, a prediction waits for its label (and a label for its predictions).</param>
    /// <param name="referenceAuc">A model's (name@version) training test AUC, when known.</param>
    public LiveEvaluator(ProcessorOptions options, long horizonMs, IDatabase redis, IAvroSchemaRegistry registry, IMetricFactory metrics,
        ILoggerFactory loggers, Func<string, double?>? referenceAuc = null)
    {
        _options = options;
        _settings = options.Evaluation;
        _registry = registry;
        _referenceAuc = referenceAuc ?? (_ => null);
        _log = loggers.CreateLogger<LiveEvaluator>();
        HorizonMs = horizonMs;
        Namespace = EvaluationNamespace.Of(_settings.EffectiveGroupId(options.Kafka));
        _join = new RedisLabelJoin(redis, horizonMs, expiryGraceMs: _settings.ExpiryGraceMs, ns: Namespace);
        Windows = new RedisEvaluationWindows(redis, Namespace, _settings.WindowMs, horizonMs, _settings.RetentionMs, _settings.ExpiryGraceMs);
        _arrival = new EvaluationWindows(_settings.WindowMs, horizonMs, _settings.ArrivalWindowEvents, options.Model.DecisionThreshold, eventTimeWindows: false);
        _arrival.Closed += r => _pendingArrival.Add(Evaluate(r, null, null));
        _telemetry = new EvaluationTelemetry(metrics);
        _predictionsTopic = options.Kafka.OutputTopic;
        _shadowTopic = options.Kafka.EffectiveShadowTopic();
    }

    public long HorizonMs { get; }
    /// <summary>The evaluation's namespace in Redis (from its group).</summary>
    public string Namespace { get; }
    public RedisEvaluationWindows Windows { get; }
    /// <summary>The join's outcomes in this instance (joined, early, late, duplicates, emitted).</summary>
    public JoinCounts Counts => _join.Counts;
    /// <summary>The join's clock: the latest prediction event time read.</summary>
    public long ClockMs => _join.NowMs;
    /// <summary>Records processed (Redis writes acknowledged).</summary>
    public long Processed => Interlocked.Read(ref _processed);
    /// <summary>Records behind the high watermarks of the assigned partitions (-1 before the first assignment).</summary>
    public long Lag => Interlocked.Read(ref _lag);

    /// <summary>Every window reported (event-time, final; label-arrival), on the evaluator's thread.</summary>
    public event Action<EvaluatedWindow>? Reported;

    public async Task RunAsync(CancellationToken ct)
    {
        var topics = new List<string> { _predictionsTopic, _settings.LabelsTopic };
        if (_settings.IncludeShadow) topics.Add(_shadowTopic);
        var config = KafkaConfigs.Consumer(_options.Kafka);
        config.GroupId = _settings.EffectiveGroupId(_options.Kafka);
        config.ClientId = "streaminference-evaluate";
        // A subscribed topic that does not exist yet (no shadow deployed) is not an error: it is picked up once created.
        config.AllowAutoCreateTopics = false;
        var producerConfig = KafkaConfigs.Producer(_options.Kafka);
        producerConfig.ClientId = "streaminference-evaluate";
        // A report not delivered within this is retried by the next round; the reporting lock outlasts it.
        producerConfig.MessageTimeoutMs ??= 30_000;
        var lockFor = TimeSpan.FromMilliseconds(producerConfig.MessageTimeoutMs.Value) + TimeSpan.FromSeconds(30);
        using var producer = new ProducerBuilder<byte[], byte[]>(producerConfig).Build();
        _producer = producer;
        var reportTopic = _settings.EffectiveTopic(_options.Kafka);
        _reportSchemaId = await RetryAsync("registering the report schema", () => _registry.RegisterAsync($"{reportTopic}-value", EvaluationTelemetry.Schema, ct), ct).ConfigureAwait(false);
        // A restarted evaluator's join starts from the clock its predecessors reached: predictions already past their
        // horizon stay out of windows that were reported.
        _join.AdvanceTo(await RetryAsync("reading the evaluation clock", () => Windows.LatestClockAsync(), ct).ConfigureAwait(false));
        using var consumer = new ConsumerBuilder<byte[], byte[]>(config)
            .SetErrorHandler((_, e) => Log.KafkaError(_log, e.Reason))
            .SetPartitionsAssignedHandler((_, list) => RuntimeLog.Assigned(_log, list.Count, string.Join(", ", list.Select(p => $"{p.Topic}[{p.Partition.Value}]"))))
            .Build();
        consumer.Subscribe(topics);
        Log.Started(_log, string.Join(", ", topics), config.GroupId, TimeSpan.FromMilliseconds(HorizonMs).ToString(), _settings.WindowMs, Namespace);
        var nextReport = Environment.TickCount64;
        var batch = new List<ConsumeResult<byte[], byte[]>>(MaxBatch);
        try
        {
            while (!ct.IsCancellationRequested)
            {
                batch.Clear();
                if (TryConsume(consumer, TimeSpan.FromMilliseconds(100)) is { } first)
                {
                    batch.Add(first);
                    while (batch.Count < MaxBatch && TryConsume(consumer, TimeSpan.Zero) is { } next) batch.Add(next);
                    await ProcessAsync(batch, ct).ConfigureAwait(false);
                    foreach (var r in batch)
                    {
                        try
                        {
                            consumer.StoreOffset(r);
                        }
                        catch (KafkaException e) when (!e.Error.IsFatal)
                        {
                            // Revoked meanwhile: its next owner reads it again, and the writes are idempotent.
                        }
                    }
                    Interlocked.Add(ref _processed, batch.Count);
                }
                UpdateLag(consumer);
                if (Environment.TickCount64 >= nextReport)
                {
                    nextReport = Environment.TickCount64 + _settings.ReportIntervalMs;
                    await ReportAsync(reportTopic, lockFor, ct).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        finally
        {
            try
            {
                consumer.Commit();
            }
            catch (KafkaException e) when (e.Error.Code is ErrorCode.Local_NoOffset)
            {
            }
            catch (KafkaException e)
            {
                RuntimeLog.CommitFailed(_log, e.Error.Reason);
            }
            consumer.Close();
            producer.Flush(TimeSpan.FromSeconds(10));
            _producer = null;
        }
    }

    /// <summary>One record, or null; a consume error that is not fatal (a subscribed topic not created yet, a broker down) is logged once a minute and waited out.</summary>
    private ConsumeResult<byte[], byte[]>? TryConsume(IConsumer<byte[], byte[]> consumer, TimeSpan timeout)
    {
        try
        {
            return consumer.Consume(timeout);
        }
        catch (ConsumeException e) when (!e.Error.IsFatal)
        {
            if (Environment.TickCount64 - _lastConsumeWarning > 60_000)
            {
                _lastConsumeWarning = Environment.TickCount64;
                Log.KafkaError(_log, e.Error.Reason);
            }
            return null;
        }
    }

    private long _lastConsumeWarning = -60_000;

    private void UpdateLag(IConsumer<byte[], byte[]> consumer)
    {
        long lag = 0;
        foreach (var tp in consumer.Assignment)
        {
            var w = consumer.GetWatermarkOffsets(tp);
            var position = consumer.Position(tp);
            if (w.High == Offset.Unset) continue;
            lag += Math.Max(0, w.High.Value - (position == Offset.Unset ? w.Low.Value : position.Value));
        }
        Interlocked.Exchange(ref _lag, consumer.Assignment.Count == 0 ? -1 : lag);
    }

    /// <summary>
    /// Redis or the registry unavailable: the step again after a pause, until it goes through or the evaluator stops.
    /// Every step is idempotent, so a step that went through although its answer was lost does no harm when repeated.
    /// </summary>
    private async Task<T> RetryAsync<T>(string what, Func<Task<T>> step, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await step().ConfigureAwait(false);
            }
            catch (Exception e) when (e is RedisException or TimeoutException or HttpRequestException && !ct.IsCancellationRequested)
            {
                if (attempt == 1 || attempt % 10 == 0) Log.Retry(_log, what, attempt, e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5_000, 200 * attempt)), ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// A batch: each record through the join, then its window writes, concurrently (the join's script is atomic per
    /// event, so order within the batch does not matter); each step retried on its own, so a retry repeats neither
    /// another record's work nor its counting.
    /// </summary>
    private async Task ProcessAsync(List<ConsumeResult<byte[], byte[]>> batch, CancellationToken ct)
    {
        var work = new List<Task<IReadOnlyList<LabelledPrediction>>>(batch.Count);
        foreach (var r in batch)
        {
            var kind = r.Topic == _settings.LabelsTopic ? "labels" : r.Topic == _predictionsTopic ? "predictions" : "shadow";
            if (r.Message.Value is not { } value || ConfluentWireFormat.TryReadHeader(value, out var schemaId) != WireHeaderStatus.Ok)
            {
                _telemetry.Record(kind, ok: false);
                continue;
            }
            if (!_writers.TryGetValue(schemaId, out var writer))
            {
                try
                {
                    _writers[schemaId] = writer = await RetryAsync("fetching a writer schema", () => _registry.GetSchemaAsync(schemaId, ct), ct).ConfigureAwait(false);
                }
                catch (Confluent.SchemaRegistry.SchemaRegistryException)
                {
                    _telemetry.Record(kind, ok: false);   // an id the registry does not know: not ours to evaluate
                    continue;
                }
            }
            try
            {
                work.Add(kind == "labels" ? OnLabelAsync(LabelRecords.Decode(value, writer), ct) : OnPredictionAsync(PredictionReader.Read(value, writer), ct));
                _telemetry.Record(kind, ok: true);
            }
            catch (Exception e) when (e is InvalidDataException or global::Avro.AvroException or InvalidCastException or EndOfStreamException)
            {
                _telemetry.Record(kind, ok: false);
            }
        }
        await Task.WhenAll(work).ConfigureAwait(false);
        // Label-arrival windows take what was newly joined, in the order the batch read it.
        foreach (var task in work)
            foreach (var joined in task.Result)
                _arrival.OnLabelled(joined);
        _telemetry.Clock(_join.NowMs);
    }

    private async Task<IReadOnlyList<LabelledPrediction>> OnPredictionAsync(PredictionRecord r, CancellationToken ct)
    {
        var p = new ScoredEvent(r.EventId, r.EntityKey, r.Model, r.Arm, r.Score, r.EventTimeMs, r.DeploymentVersion);
        JoinStep step = null!;
        var joined = await RetryAsync("the label join", () => _join.OnPredictionAsync(p, step = new JoinStep()), ct).ConfigureAwait(false);
        _telemetry.Prediction(step.Outcome);
        if (step.Outcome == "past_horizon") return [];
        if (!await RetryAsync("an evaluation window write", () => Windows.PredictedAsync(p), ct).ConfigureAwait(false)) _telemetry.Prediction("window_final");
        await LabelledAsync(joined, step.Repeated, ct).ConfigureAwait(false);
        return joined;
    }

    private async Task<IReadOnlyList<LabelledPrediction>> OnLabelAsync(GroundTruth l, CancellationToken ct)
    {
        JoinStep step = null!;
        var joined = await RetryAsync("the label join", () => _join.OnLabelAsync(l, step = new JoinStep()), ct).ConfigureAwait(false);
        _telemetry.Label(step.Outcome);
        await LabelledAsync(joined, step.Repeated, ct).ConfigureAwait(false);
        return joined;
    }

    private async Task LabelledAsync(IReadOnlyList<LabelledPrediction> joined, List<LabelledPrediction> repeated, CancellationToken ct)
    {
        foreach (var x in joined)
        {
            _telemetry.Labelled(x);
            if (!await RetryAsync("an evaluation window write", () => Windows.LabelledAsync(x), ct).ConfigureAwait(false)) _telemetry.Label("window_final");
        }
        foreach (var x in repeated) await RetryAsync("an evaluation window write", () => Windows.LabelledAsync(x), ct).ConfigureAwait(false);
    }

    private async Task ReportAsync(string topic, TimeSpan lockFor, CancellationToken ct)
    {
        foreach (var w in _pendingArrival) await PublishAsync(topic, w).ConfigureAwait(false);
        _pendingArrival.Clear();
        try
        {
            var clock = await Windows.SharedClockAsync(_join.NowMs, Math.Max(10_000, 10L * _settings.ReportIntervalMs)).ConfigureAwait(false);
            await Windows.ReportFinalAsync(clock, async content =>
            {
                var metrics = BinaryEvaluation.Compute(content.Scores, content.Labels, _options.Model.DecisionThreshold);
                var report = new EvaluationReport(content.Id.Model, content.Id.Arm, EvaluationWindowKind.EventTime, 0, content.Id.StartMs,
                    content.Id.StartMs + Windows.WindowMs, content.Predicted, metrics);
                return await PublishAsync(topic, Evaluate(report, content.Scores, content.Labels)).ConfigureAwait(false);
            }, lockFor).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException && !ct.IsCancellationRequested)
        {
            Log.Retry(_log, "reporting final windows", 1, e.Message);   // the next round tries again
        }
    }

    private EvaluatedWindow Evaluate(EvaluationReport report, double[]? scores, bool[]? labels) =>
        new(report, scores is null ? new AucInterval(report.Metrics.Auc, double.NaN, double.NaN, double.NaN) : DeLong.Single(scores, labels!, _settings.Alpha),
            _referenceAuc(report.Model), DateTimeOffset.UtcNow);

    /// <summary>Publishes a report (not cancelled by shutdown: a report in flight is delivered or fails by the producer's timeout); true once delivered.</summary>
    private async Task<bool> PublishAsync(string topic, EvaluatedWindow w)
    {
        var delivered = false;
        try
        {
            var result = await _producer!.ProduceAsync(topic, new Message<byte[], byte[]>
            {
                Key = System.Text.Encoding.UTF8.GetBytes(w.Report.Model),
                Value = _telemetry.Encode(w, _reportSchemaId),
            }, CancellationToken.None).ConfigureAwait(false);
            delivered = result.Status == PersistenceStatus.Persisted;
        }
        catch (ProduceException<byte[], byte[]> e)
        {
            Log.ReportFailed(_log, w.Report.Model, e.Error.Reason);
        }
        _telemetry.Published(w.Report.Kind, delivered);
        if (!delivered) return false;
        _telemetry.Window(w);
        Reported?.Invoke(w);
        return true;
    }

    /// <summary>Every labelled prediction held in the windows, per model and arm: event ids, scores and labels.</summary>
    public async Task<IReadOnlyDictionary<(string Model, string Arm), (string[] EventIds, double[] Scores, bool[] Labels)>> LabelledAsync()
    {
        var all = new Dictionary<(string, string), (List<string> Ids, List<double> Scores, List<bool> Labels)>();
        foreach (var id in await Windows.ListAsync().ConfigureAwait(false))
        {
            var c = await Windows.ReadAsync(id).ConfigureAwait(false);
            if (!all.TryGetValue((id.Model, id.Arm), out var acc)) all[(id.Model, id.Arm)] = acc = ([], [], []);
            acc.Ids.AddRange(c.EventIds);
            acc.Scores.AddRange(c.Scores);
            acc.Labels.AddRange(c.Labels);
        }
        return all.ToDictionary(x => x.Key, x => (x.Value.Ids.ToArray(), x.Value.Scores.ToArray(), x.Value.Labels.ToArray()));
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Evaluating {Topics} as group {Group}: horizon {Horizon}, event-time windows of {WindowMs} ms, state in Redis under namespace {Namespace}")]
        public static partial void Started(ILogger logger, string topics, string group, string horizon, long windowMs, string @namespace);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Kafka: {Reason}")]
        public static partial void KafkaError(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "{What} failed ({Reason}); retrying (attempt {Attempt}), nothing is committed meanwhile")]
        public static partial void Retry(ILogger logger, string what, int attempt, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Evaluation report of {Model} not delivered: {Reason}")]
        public static partial void ReportFailed(ILogger logger, string model, string reason);
    }
}
