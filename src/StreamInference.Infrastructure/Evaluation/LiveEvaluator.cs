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
        _join = new RedisLabelJoin(redis, horizonMs, expiryGraceMs: _settings.ExpiryGraceMs);
        Windows = new RedisEvaluationWindows(redis, _settings.WindowMs, horizonMs, _settings.RetentionMs, _settings.ExpiryGraceMs);
        _arrival = new EvaluationWindows(_settings.WindowMs, horizonMs, _settings.ArrivalWindowEvents, options.Model.DecisionThreshold, eventTimeWindows: false);
        _arrival.Closed += r => _pendingArrival.Add(Evaluate(r, null, null));
        _telemetry = new EvaluationTelemetry(metrics);
        _predictionsTopic = options.Kafka.OutputTopic;
        _shadowTopic = options.Kafka.EffectiveShadowTopic();
    }

    public long HorizonMs { get; }
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
        using var producer = new ProducerBuilder<byte[], byte[]>(producerConfig).Build();
        _producer = producer;
        var reportTopic = _settings.EffectiveTopic(_options.Kafka);
        _reportSchemaId = await _registry.RegisterAsync($"{reportTopic}-value", EvaluationTelemetry.Schema, ct).ConfigureAwait(false);
        using var consumer = new ConsumerBuilder<byte[], byte[]>(config)
            .SetErrorHandler((_, e) => Log.KafkaError(_log, e.Reason))
            .SetPartitionsAssignedHandler((_, list) => RuntimeLog.Assigned(_log, list.Count, string.Join(", ", list.Select(p => $"{p.Topic}[{p.Partition.Value}]"))))
            .Build();
        consumer.Subscribe(topics);
        Log.Started(_log, string.Join(", ", topics), config.GroupId, TimeSpan.FromMilliseconds(HorizonMs).ToString(), _settings.WindowMs);
        var nextReport = Environment.TickCount64;
        var batch = new List<ConsumeResult<byte[], byte[]>>(MaxBatch);
        try
        {
            while (!ct.IsCancellationRequested)
            {
                batch.Clear();
                var first = consumer.Consume(TimeSpan.FromMilliseconds(100));
                if (first is not null)
                {
                    batch.Add(first);
                    while (batch.Count < MaxBatch && consumer.Consume(TimeSpan.Zero) is { } next) batch.Add(next);
                    await ProcessWithRetryAsync(batch, ct).ConfigureAwait(false);
                    foreach (var r in batch) consumer.StoreOffset(r);
                    Interlocked.Add(ref _processed, batch.Count);
                }
                UpdateLag(consumer);
                if (Environment.TickCount64 >= nextReport)
                {
                    nextReport = Environment.TickCount64 + _settings.ReportIntervalMs;
                    await ReportAsync(reportTopic, ct).ConfigureAwait(false);
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

    /// <summary>Redis unavailable: the same batch again after a pause (every write is idempotent), until it goes through or the evaluator stops.</summary>
    private async Task ProcessWithRetryAsync(List<ConsumeResult<byte[], byte[]>> batch, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await ProcessAsync(batch, ct).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is RedisException or TimeoutException && !ct.IsCancellationRequested)
            {
                Log.RedisRetry(_log, batch.Count, attempt, e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5_000, 200 * attempt)), ct).ConfigureAwait(false);
            }
        }
    }

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
                    _writers[schemaId] = writer = await _registry.GetSchemaAsync(schemaId, ct).ConfigureAwait(false);
                }
                catch (Confluent.SchemaRegistry.SchemaRegistryException)
                {
                    _telemetry.Record(kind, ok: false);   // an id the registry does not know: not ours to evaluate
                    continue;
                }
            }
            try
            {
                work.Add(kind == "labels" ? OnLabelAsync(LabelRecords.Decode(value, writer)) : OnPredictionAsync(PredictionReader.Read(value, writer)));
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

    private async Task<IReadOnlyList<LabelledPrediction>> OnPredictionAsync(PredictionRecord r)
    {
        var p = new ScoredEvent(r.EventId, r.EntityKey, r.Model, r.Arm, r.Score, r.EventTimeMs, r.DeploymentVersion);
        var step = new JoinStep();
        var joined = await _join.OnPredictionAsync(p, step).ConfigureAwait(false);
        _telemetry.Prediction(step.Outcome);
        if (step.Outcome == "past_horizon") return [];
        await Windows.PredictedAsync(p).ConfigureAwait(false);
        await LabelledAsync(joined, step.Repeated).ConfigureAwait(false);
        return joined;
    }

    private async Task<IReadOnlyList<LabelledPrediction>> OnLabelAsync(GroundTruth l)
    {
        var step = new JoinStep();
        var joined = await _join.OnLabelAsync(l, step).ConfigureAwait(false);
        _telemetry.Label(step.Outcome);
        await LabelledAsync(joined, step.Repeated).ConfigureAwait(false);
        return joined;
    }

    private async Task LabelledAsync(IReadOnlyList<LabelledPrediction> joined, List<LabelledPrediction> repeated)
    {
        foreach (var x in joined)
        {
            _telemetry.Labelled(x);
            await Windows.LabelledAsync(x).ConfigureAwait(false);
        }
        foreach (var x in repeated) await Windows.LabelledAsync(x).ConfigureAwait(false);
    }

    private async Task ReportAsync(string topic, CancellationToken ct)
    {
        foreach (var w in _pendingArrival) await PublishAsync(topic, w, ct).ConfigureAwait(false);
        _pendingArrival.Clear();
        await Windows.ReportFinalAsync(_join.NowMs, async content =>
        {
            var metrics = BinaryEvaluation.Compute(content.Scores, content.Labels, _options.Model.DecisionThreshold);
            var report = new EvaluationReport(content.Id.Model, content.Id.Arm, EvaluationWindowKind.EventTime, 0, content.Id.StartMs,
                content.Id.StartMs + Windows.WindowMs, content.Predicted, metrics);
            await PublishAsync(topic, Evaluate(report, content.Scores, content.Labels), ct).ConfigureAwait(false);
        }).ConfigureAwait(false);
    }

    private EvaluatedWindow Evaluate(EvaluationReport report, double[]? scores, bool[]? labels) =>
        new(report, scores is null ? new AucInterval(report.Metrics.Auc, double.NaN, double.NaN, double.NaN) : DeLong.Single(scores, labels!, _settings.Alpha),
            _referenceAuc(report.Model), DateTimeOffset.UtcNow);

    private async Task PublishAsync(string topic, EvaluatedWindow w, CancellationToken ct)
    {
        _telemetry.Window(w);
        var delivered = false;
        try
        {
            var result = await _producer!.ProduceAsync(topic, new Message<byte[], byte[]>
            {
                Key = System.Text.Encoding.UTF8.GetBytes(w.Report.Model),
                Value = _telemetry.Encode(w, _reportSchemaId),
            }, ct).ConfigureAwait(false);
            delivered = result.Status == PersistenceStatus.Persisted;
        }
        catch (ProduceException<byte[], byte[]> e)
        {
            Log.ReportFailed(_log, w.Report.Model, e.Error.Reason);
        }
        _telemetry.Published(w.Report.Kind, delivered);
        Reported?.Invoke(w);
    }

    /// <summary>Every labelled prediction held in the windows, per model and arm: the live figures since the retention began.</summary>
    public async Task<IReadOnlyDictionary<(string Model, string Arm), BinaryMetrics>> CumulativeAsync() =>
        (await LabelledAsync().ConfigureAwait(false)).ToDictionary(x => x.Key, x => BinaryEvaluation.Compute(x.Value.Scores, x.Value.Labels, _options.Model.DecisionThreshold));

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
        [LoggerMessage(Level = LogLevel.Information, Message = "Evaluating {Topics} as group {Group}: horizon {Horizon}, event-time windows of {WindowMs} ms")]
        public static partial void Started(ILogger logger, string topics, string group, string horizon, long windowMs);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Kafka: {Reason}")]
        public static partial void KafkaError(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Redis unavailable ({Reason}); retrying a batch of {Count} records (attempt {Attempt}), nothing is lost")]
        public static partial void RedisRetry(ILogger logger, int count, int attempt, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Evaluation report of {Model} not delivered: {Reason}")]
        public static partial void ReportFailed(ILogger logger, string model, string reason);
    }
}
