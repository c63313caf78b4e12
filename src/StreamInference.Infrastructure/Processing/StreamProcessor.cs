using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Core.Drift;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Drift;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Metrics;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Redis;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Processing;

/// <summary>
/// One processor instance: loads the feature set, reader schema and model, connects to the registry,
/// Redis and Kafka, and runs consume → decode → enrich → batch → score → publish → commit until stopped.
/// Everything that can be checked is checked before the first record is consumed.
/// </summary>
public sealed partial class StreamProcessor
{
    private readonly ProcessorOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly IMetricFactory _metricFactory;
    private readonly Func<string, string> _resolvePath;
    private volatile bool _ready;
    private volatile bool _reachedReady;

    public StreamProcessor(ProcessorOptions options, ILoggerFactory loggers, IMetricFactory metricFactory, Func<string, string>? resolvePath = null)
    {
        _options = options;
        _loggers = loggers;
        _log = loggers.CreateLogger<StreamProcessor>();
        _metricFactory = metricFactory;
        _resolvePath = resolvePath ?? PathResolver.Resolve;
    }

    /// <summary>Set once everything is loaded and connected and the consumer runs.</summary>
    public bool IsReady => _ready;

    /// <summary>Partitions currently assigned to this instance by the consumer group.</summary>
    public int AssignedPartitions => _consumer?.AssignedPartitions ?? 0;
    private KafkaConsumerLoop? _consumer;

    /// <summary>Available once <see cref="RunAsync"/> has loaded the feature set.</summary>
    public ProcessorMetrics? Metrics { get; private set; }

    /// <summary>An extra per-batch observer (live views, audits), called after the metrics; set before <see cref="RunAsync"/>.</summary>
    public IPipelineObserver? Observer { get; init; }

    /// <summary>
    /// Runs until stopped; a restartable failure (an aborted transaction, deliveries that failed after an
    /// outage outlasted the producer's timeouts) restarts the processor from the committed offsets after a
    /// backoff instead of ending it. Anything else (bad configuration, a model that does not load) ends it.
    /// </summary>
    public async Task RunSupervisedAsync(CancellationToken stop)
    {
        var restarts = _metricFactory.CreateCounter("streaminference_restarts_total",
            "In-process restarts of the processor after a restartable failure.");
        var backoff = TimeSpan.FromSeconds(1);
        var restarting = false;
        while (true)
        {
            var started = Environment.TickCount64;
            try
            {
                await RunAsync(stop).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (!stop.IsCancellationRequested
                                      && (e is PipelineFatalException { Restartable: true } || ((restarting || _reachedReady) && IsTransient(e))))
            {
                // A first start fails fast on anything (configuration, unreachable services); once running,
                // an outage that outlasts a restart is waited out.
                restarting = true;
                if (Environment.TickCount64 - started > 60_000) backoff = TimeSpan.FromSeconds(1);
                restarts.Inc();
                Log.Restarting(_log, Secrets.RedactText(e.Message), backoff.TotalSeconds);
                await Task.Delay(backoff, stop).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
            }
        }
    }

    /// <summary>Infrastructure that may come back: Kafka, the registry or Redis not answering.</summary>
    private static bool IsTransient(Exception e) => e switch
    {
        KafkaException k => !k.Error.IsFatal,
        SchemaRegistryException r => r.ErrorCode == SchemaRegistryException.Unreachable || r.HttpStatus >= 500,
        RedisConnectionException or RedisTimeoutException or TimeoutException => true,
        _ => false,
    };

    /// <summary>
    /// Exactly-once: what to do when the Kafka client's transactional call hangs past every timeout
    /// (default: log and end the process so the orchestrator restarts it).
    /// </summary>
    public Action<string>? OnWedged { get; init; }

    public async Task RunAsync(CancellationToken stop)
    {
        var errors = ProcessorOptionsValidator.Validate(_options, _resolvePath);
        if (errors.Count > 0) throw new OptionsValidationException(errors);

        var plan = FeatureSetLoader.LoadFile(_resolvePath(_options.Features.Definition));
        var readerSchema = AvroSchema.Parse(await File.ReadAllTextAsync(_resolvePath(_options.Features.ReaderSchema), stop).ConfigureAwait(false));
        var modelDir = ModelRepository.Resolve(_resolvePath(_options.Model.Repository), _options.Model.Name, _options.Model.Version);
        ExecutionDevice.TryParse(_options.Model.Device, out var device, out _);
        var scorerOptions = new OnnxScorerOptions { IntraOpThreads = _options.Model.IntraOpThreads, Device = device, CudaProviderOptions = _options.Model.Cuda };
        var initial = new OnnxScorer(modelDir, plan, scorerOptions);
        Log.ModelLoaded(_log, initial.ModelName, initial.ModelVersion, modelDir, plan.Name, plan.Version, plan.FeatureCount, initial.OutputWidth);
        if (initial.FallbackReason is { } why) Log.DeviceFallback(_log, why);
        // Later versions (hot swap) run where the first one does.
        if (device.Kind == ExecutionDeviceKind.Auto)
            scorerOptions.Device = initial.ExecutionProvider == "cpu" ? ExecutionDevice.Cpu : new ExecutionDevice(ExecutionDeviceKind.Cuda, device.DeviceId);

        var batchLimit = _options.Pipeline.MaxBatchSize;
        if (_options.Model.AutotuneBatchSize)
        {
            // A restart after a failure reuses the choice made for the same model on the same device. A
            // version swapped in later keeps it: the pipeline's batch buffers are sized at start.
            var tuned = $"{modelDir}|{initial.ExecutionProvider}";
            if (_autotune is null || _autotunedFor != tuned)
            {
                try
                {
                    _autotune = BatchSweep.Autotune(initial, plan, _options.Pipeline.MaxBatchSize,
                        TimeSpan.FromMilliseconds(_options.Model.BatchLatencyBudgetMs), TimeSpan.FromMilliseconds(300));
                    _autotunedFor = tuned;
                }
                catch
                {
                    initial.Dispose();
                    throw;
                }
            }
            batchLimit = _autotune.Chosen;
            if (_autotune.ChosenMeasurement.P99Ms > _autotune.BudgetMs) Log.AutotuneOverBudget(_log, _autotune.BudgetMs, _autotune.ChosenMeasurement.P99Ms);
            var measured = _metricFactory.CreateGauge("streaminference_autotune_events_per_second",
                "Scoring throughput the batch-size autotune measured at model load, per batch size.", ["batch_size"]);
            foreach (var m in _autotune.Measurements)
                measured.WithLabels(m.BatchSize.ToString(System.Globalization.CultureInfo.InvariantCulture)).Set(m.EventsPerSecond);
            Log.Autotuned(_log, batchLimit, _autotune.ChosenMeasurement.EventsPerSecond, _autotune.ChosenMeasurement.P99Ms, _autotune.BudgetMs,
                string.Join(", ", _autotune.Measurements.Select(m => string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"{m.BatchSize}: {m.EventsPerSecond:N0}/s p99 {m.P99Ms:0.###} ms"))));
        }
        _metricFactory.CreateGauge("streaminference_batch_size_limit",
            "Largest micro-batch the pipeline forms: Pipeline:MaxBatchSize, or what Model:AutotuneBatchSize chose below it.").Set(batchLimit);

        var k = _options.Kafka;
        var metrics = new ProcessorMetrics(_metricFactory, plan, k.InputTopic, k.OutputTopic, _loggers.CreateLogger<ProcessorMetrics>());
        metrics.ModelInfo.WithLabels(initial.ModelName, initial.ModelVersion).Set(1);
        _metricFactory.CreateGauge("streaminference_model_execution_provider",
            "Where the model runs (value 1): cpu or cuda:<id>; fallback=\"true\" when Model:Device=auto could not use CUDA.", ["provider", "fallback"])
            .WithLabels(initial.ExecutionProvider, initial.FallbackReason is null ? "false" : "true").Set(1);
        _metricFactory.CreateGauge("streaminference_model_execution_fallback",
            "1 when Model:Device=auto asked for CUDA and the model runs on the CPU instead, else 0.")
            .Set(initial.FallbackReason is null ? 0 : 1);
        var swaps = _metricFactory.CreateCounter("streaminference_model_swaps_total",
            "New model versions found in the repository: loaded (and swapped in) or rejected.", ["result"]);
        // Both series exist from the start, so increase() sees the first rejection.
        swaps.WithLabels("loaded");
        swaps.WithLabels("rejected");
        // Model:Version=latest follows the repository: new versions are loaded, warmed and swapped in.
        var watch = _options.Model.Version == "latest" ? TimeSpan.FromMilliseconds(_options.Model.WatchIntervalMs) : TimeSpan.Zero;
        using var scorer = new HotSwapScorer(initial, _resolvePath(_options.Model.Repository), _options.Model.Name, plan, scorerOptions,
            _loggers.CreateLogger<HotSwapScorer>(), watch)
        {
            Swapped = (previous, next, _) =>
            {
                metrics.ModelInfo.WithLabels(previous.Name, previous.Version).Set(0);
                metrics.ModelInfo.WithLabels(next.Name, next.Version).Set(1);
                swaps.WithLabels("loaded").Inc();
                if (Drift is not null) Log.DriftStaysOnProfile(_log, previous.ToString(), next.ToString());
            },
            Rejected = (_, _) => swaps.WithLabels("rejected").Inc(),
        };
        Metrics = metrics;

        using var registry = new SchemaRegistryClient(_options.SchemaRegistry);
        var decoder = new AvroEventDecoder(registry, readerSchema, plan, _options.Features.MaxMessageBytes)
        {
            DeadLetterWhenRegistryUnavailable = _options.SchemaRegistry.OnUnavailable == RegistryPolicy.DeadLetter,
            OnRegistryRetry = e => metrics.OnRetry("decode", e),
        };
        var predictionSchemaId = await registry.RegisterAsync($"{k.OutputTopic}-value", PredictionWriter.Schema, stop).ConfigureAwait(false);

        var redisConfig = ConfigurationOptions.Parse(_options.Redis.Configuration);
        redisConfig.AbortOnConnectFail = false;
        using var redis = await ConnectionMultiplexer.ConnectAsync(redisConfig).ConfigureAwait(false);
        var store = new RedisFeatureStore(redis, plan) { OnUpdated = metrics.OnWindowStateUpdate };

        var exactlyOnce = k.Delivery == DeliveryGuarantee.ExactlyOnce;
        using var producer = BuildProducer(ProducerConfigFor(k));
        using var transactions = exactlyOnce
            ? new KafkaTransactions(producer, _loggers.CreateLogger<KafkaTransactions>(),
                TimeSpan.FromMilliseconds(k.TransactionCommitIntervalMs), TimeSpan.FromMilliseconds(k.TransactionTimeoutMs),
                TimeSpan.FromMilliseconds(k.Producer.SocketTimeoutMs ?? 60_000))
            {
                Wedged = OnWedged ?? (why =>
                {
                    Log.ProducerWedged(_log, why);
                    Environment.FailFast("StreamInference: transactional producer wedged: " + why);
                }),
            }
            : null;
        if (exactlyOnce) Log.ExactlyOnce(_log, k.EffectiveTransactionalId, k.TransactionCommitIntervalMs);
        // Drift reports are telemetry, not outputs: in exactly-once mode they go through their own
        // (idempotent, non-transactional) producer so they never hold a transaction open.
        var driftConfig = ProducerConfigFor(k);
        driftConfig.TransactionalId = null;
        using var driftProducer = exactlyOnce ? BuildProducer(driftConfig) : null;
        var sink = new KafkaPredictionSink(producer, k.OutputTopic, k.DeadLetterTopic,
            new PredictionWriter(predictionSchemaId, scorer.ModelName, scorer.ModelVersion, scorer.PrimaryScoreIndex), transactions);
        IPipelineObserver observer = metrics;
        using var drift = await CreateDriftAsync(plan, scorer, modelDir, driftProducer ?? producer, registry, stop).ConfigureAwait(false);
        if (drift is not null)
        {
            Drift = drift.Monitor;
            observer = new CompositeObserver(observer, drift);
        }
        if (Observer is not null) observer = new CompositeObserver(observer, Observer);
        var topology = new PipelineTopology(_options.Pipeline.ToPipelineOptions(_options.Redis, _options.Model, batchLimit), plan, decoder, store, scorer, sink, observer);

        using var consumer = new KafkaConsumerLoop(ConsumerConfigFor(k), [k.InputTopic], topology, metrics,
            _loggers.CreateLogger<KafkaConsumerLoop>(), TimeSpan.FromMilliseconds(k.RevokeDrainTimeoutMs), transactions,
            k.MirrorTransactionalOffsets, TimeSpan.FromMilliseconds(k.PauseAfterMs));
        _consumer = consumer;
        using var abort = new CancellationTokenSource();
        var pipeline = topology.RunAsync(abort.Token);
        var shutdownTimeout = TimeSpan.FromMilliseconds(_options.Pipeline.ShutdownTimeoutMs);
        var consuming = consumer.RunAsync(pipeline, shutdownTimeout, stop);
        _ready = true;
        _reachedReady = true;
        Log.Started(_log, k.InputTopic, k.OutputTopic, k.DeadLetterTopic, k.GroupId);
        Exception? consumeError = null;
        try
        {
            await consuming.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            consumeError = e;
        }
        _ready = false;
        if (!pipeline.IsCompleted) await abort.CancelAsync().ConfigureAwait(false);
        Exception? pipelineError = null;
        try
        {
            await pipeline.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (abort.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            pipelineError = e;
        }
        if (!exactlyOnce) producer.Flush(shutdownTimeout);
        driftProducer?.Flush(shutdownTimeout);
        // A permanent transactional failure (fenced) wins; otherwise, when both sides failed, the
        // restartable cause wins: the other is usually its consequence.
        var failure = (consumeError is not null || pipelineError is not null ? transactions?.Failure is { Restartable: false } fenced ? fenced : null : null)
                      ?? new[] { consumeError, pipelineError }.FirstOrDefault(e => e is PipelineFatalException { Restartable: true })
                      ?? consumeError ?? pipelineError;
        if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        Log.Stopped(_log, metrics.PublishedCount, metrics.DeadLetteredCount);
    }

    /// <summary>The drift monitor, when drift monitoring is on; available once <see cref="RunAsync"/> has loaded the model.</summary>
    public DriftMonitor? Drift { get; private set; }

    private async Task<DriftPublisher?> CreateDriftAsync(FeaturePlan plan, HotSwapScorer scorer, string modelDir, IProducer<byte[], byte[]> producer,
        ISchemaRegistryClient registry, CancellationToken stop)
    {
        var d = _options.Drift;
        if (!d.Enabled) return null;
        var path = d.Profile is { Length: > 0 } p ? _resolvePath(p) : Path.Combine(modelDir, ReferenceProfile.FileName);
        if (!File.Exists(path))
        {
            Log.DriftOff(_log, path);
            return null;
        }
        var profile = ReferenceProfile.Load(path);
        if (profile.Model != scorer.ModelName || profile.ModelVersion != scorer.ModelVersion)
            throw new InvalidDataException($"{path}: the reference profile is for model {profile.Model}@{profile.ModelVersion}, the loaded model is {scorer.ModelName}@{scorer.ModelVersion}.");
        var monitor = new DriftMonitor(profile, plan, d.ToThresholds(), d.ToWindowing());
        var schemaId = await registry.RegisterAsync($"{d.Topic}-value", DriftReportWriter.Schema, stop).ConfigureAwait(false);
        Log.DriftOn(_log, path, d.Topic, d.WindowSeconds > 0 ? $"{d.WindowSeconds} s" : $"{d.WindowEvents} events");
        return new DriftPublisher(monitor, scorer.PrimaryScoreIndex, producer, d.Topic, schemaId, $"{scorer.ModelName}@{scorer.ModelVersion}",
            _metricFactory, _loggers.CreateLogger<DriftPublisher>(), d.WindowSeconds);
    }

    private IProducer<byte[], byte[]> BuildProducer(ProducerConfig config) =>
        new ProducerBuilder<byte[], byte[]>(config)
            .SetErrorHandler((_, e) => Log.ProducerError(_log, e.Code.ToString(), e.Reason))
            .Build();

    public static ProducerConfig ProducerConfigFor(KafkaOptions k)
    {
        var config = new ProducerConfig(k.Producer.ToDictionary())
        {
            BootstrapServers = k.BootstrapServers,
        };
        // Idempotence keeps retries from duplicating or reordering predictions; acks=all is implied.
        config.EnableIdempotence ??= true;
        config.LingerMs ??= 5;
        config.CompressionType ??= CompressionType.Lz4;
        config.ClientId ??= "streaminference-processor";
        if (k.Delivery == DeliveryGuarantee.ExactlyOnce)
        {
            config.TransactionalId = k.EffectiveTransactionalId;
            config.TransactionTimeoutMs ??= Math.Max(60_000, k.TransactionTimeoutMs * 2);
        }
        return config;
    }

    public static ConsumerConfig ConsumerConfigFor(KafkaOptions k)
    {
        var config = new ConsumerConfig(k.Consumer.ToDictionary())
        {
            BootstrapServers = k.BootstrapServers,
            GroupId = k.GroupId,
            EnableAutoOffsetStore = false,
        };
        config.AutoOffsetReset ??= AutoOffsetReset.Earliest;
        config.EnableAutoCommit ??= true;
        config.AutoCommitIntervalMs ??= 1000;
        config.ClientId ??= "streaminference-processor";
        return config;
    }

    private AutotuneResult? _autotune;
    private string? _autotunedFor;

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Batch size autotune: serving batches of up to {BatchSize} ({EventsPerSecond:N0} events/s, p99 {P99Ms:0.###} ms per batch, budget {BudgetMs} ms); measured {Measurements}")]
        public static partial void Autotuned(ILogger logger, int batchSize, double eventsPerSecond, double p99Ms, double budgetMs, string measurements);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Batch size autotune: even a batch of 1 takes {P99Ms:0.###} ms (p99), over Model:BatchLatencyBudgetMs={BudgetMs}; serving batches of 1. Raise the budget if throughput matters more.")]
        public static partial void AutotuneOverBudget(ILogger logger, double budgetMs, double p99Ms);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Model:Device=auto: running on the CPU; {Reason}")]
        public static partial void DeviceFallback(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model}@{Version} loaded from {Directory} (feature set {FeatureSet} v{FeatureSetVersion}, {Features} features, {Outputs} score column(s))")]
        public static partial void ModelLoaded(ILogger logger, string model, string version, string directory, string featureSet, int featureSetVersion, int features, int outputs);

        [LoggerMessage(Level = LogLevel.Information, Message = "Processing {Input} → {Output} (dead letters: {DeadLetters}) as consumer group {Group}")]
        public static partial void Started(ILogger logger, string input, string output, string deadLetters, string group);

        [LoggerMessage(Level = LogLevel.Information, Message = "Stopped: {Published} predictions and {DeadLettered} dead letters acknowledged")]
        public static partial void Stopped(ILogger logger, long published, long deadLettered);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Drift monitoring off: no reference profile at {Path} (run 'streaminference profile', or set Drift:Enabled=false)")]
        public static partial void DriftOff(ILogger logger, string path);

        [LoggerMessage(Level = LogLevel.Information, Message = "Drift monitoring against {Path}: reports to {Topic} every {Window}")]
        public static partial void DriftOn(ILogger logger, string path, string topic, string window);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Drift monitoring continues against the reference profile of {Previous}; restart to monitor {Next} against its own profile")]
        public static partial void DriftStaysOnProfile(ILogger logger, string previous, string next);

        [LoggerMessage(Level = LogLevel.Critical, Message = "Exactly-once producer wedged: {Reason}; ending the process so it restarts (the open transaction is aborted by the broker)")]
        public static partial void ProducerWedged(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Error, Message = "Processor failed ({Reason}); restarting from the committed offsets in {Seconds}s")]
        public static partial void Restarting(ILogger logger, string reason, double seconds);

        [LoggerMessage(Level = LogLevel.Information, Message = "Exactly-once delivery: transactional id {TransactionalId}, commit every {IntervalMs} ms")]
        public static partial void ExactlyOnce(ILogger logger, string transactionalId, int intervalMs);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Kafka producer error {Code}: {Reason}")]
        public static partial void ProducerError(ILogger logger, string code, string reason);
    }
}

/// <summary>Configuration that failed validation; the message lists each setting to fix.</summary>
public sealed class OptionsValidationException(IReadOnlyList<string> errors)
    : Exception("Invalid configuration:" + Environment.NewLine + string.Join(Environment.NewLine, errors.Select(e => "  - " + e)))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

/// <summary>Relative paths resolve against the working directory first, then the application directory.</summary>
public static class PathResolver
{
    public static string Resolve(string path)
    {
        if (Path.IsPathRooted(path)) return path;
        var fromCwd = Path.GetFullPath(path);
        if (File.Exists(fromCwd) || Directory.Exists(fromCwd)) return fromCwd;
        var fromApp = Path.Combine(AppContext.BaseDirectory, path);
        return File.Exists(fromApp) || Directory.Exists(fromApp) ? fromApp : fromCwd;
    }
}
