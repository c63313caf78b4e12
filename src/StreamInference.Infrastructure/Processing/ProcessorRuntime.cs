using StreamInference.Core.Deployment;
using StreamInference.Infrastructure.Deployment;
using System.Globalization;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Core.Drift;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;
using StreamInference.Core.Supervision;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Drift;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Kafka.Commit;
using StreamInference.Infrastructure.Metrics;
using StreamInference.Infrastructure.Onnx;
using StreamInference.Infrastructure.Redis;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Processing;

/// <summary>What one run needs from its host besides the options: logging, metrics, and how relative paths resolve.</summary>
public sealed record RuntimeContext(ILoggerFactory Loggers, IMetricFactory MetricFactory, Func<string, string> ResolvePath)
{
    /// <summary>An extra per-batch observer (live views, audits), called after the metrics and drift.</summary>
    public IPipelineObserver? Observer { get; init; }
    /// <summary>Exactly-once: a transactional call hangs past every timeout (default: log and end the process).</summary>
    public Action<string>? OnWedged { get; init; }
    /// <summary>Wraps the commit strategy (dev services only: the embedded cluster's offset mirror).</summary>
    public Func<ICommitStrategy, ICommitStrategy>? DecorateCommit { get; init; }
    /// <summary>The batch size autotune's choice, kept across restarts of the same model on the same device.</summary>
    public AutotuneCache Autotune { get; } = new();
}

/// <summary>The last autotune result and what it was measured for.</summary>
public sealed class AutotuneCache
{
    public string? Key { get; set; }
    public AutotuneResult? Result { get; set; }
}

/// <summary>
/// Everything one run of the processor needs, built in dependency order by <see cref="BuildAsync"/> —
/// feature set and model, metrics, registry and decoder, Redis, the delivery mode (commit strategy and
/// producers), sink, drift, topology, consumer — and disposed as one, in reverse order.
/// <see cref="RunAsync"/> runs it once; restarts belong to the <see cref="Supervisor"/>.
/// </summary>
public sealed class ProcessorRuntime : IDisposable
{
    private readonly ProcessorOptions _options;
    private readonly RuntimeContext _context;
    private readonly ILogger _log;
    private readonly Stack<IDisposable> _owned = new();
    private PipelineTopology _topology = null!;
    private KafkaConsumerLoop _consumer = null!;
    private DeliveryMode _delivery = null!;

    private ProcessorRuntime(ProcessorOptions options, RuntimeContext context)
    {
        _options = options;
        _context = context;
        _log = context.Loggers.CreateLogger<StreamProcessor>();
    }

    public ProcessorMetrics Metrics { get; private set; } = null!;
    /// <summary>The drift monitor of the model serving now (the champion), when drift monitoring is on and it has a profile.</summary>
    public DriftMonitor? Drift => ModelDrift?.Serving;
    /// <summary>Set while the consumer runs.</summary>
    public bool IsReady { get; private set; }
    public int AssignedPartitions => _consumer.AssignedPartitions;

    /// <summary>Loads, connects and checks everything before the first record is consumed; on failure, releases what it built.</summary>
    public static async Task<ProcessorRuntime> BuildAsync(ProcessorOptions options, RuntimeContext context, CancellationToken ct)
    {
        var runtime = new ProcessorRuntime(options, context);
        try
        {
            await runtime.BuildAsync(ct).ConfigureAwait(false);
            return runtime;
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
    }

    private async Task BuildAsync(CancellationToken ct)
    {
        var k = _options.Kafka;
        var plan = FeatureSetLoader.LoadFile(_context.ResolvePath(_options.Features.Definition));
        var readerSchema = AvroSchema.Parse(await File.ReadAllTextAsync(_context.ResolvePath(_options.Features.ReaderSchema), ct).ConfigureAwait(false));
        Metrics = new ProcessorMetrics(_context.MetricFactory, plan, k.InputTopic, k.OutputTopic, _context.Loggers.CreateLogger<ProcessorMetrics>());
        var deployment = LoadDeployment();
        var (initial, modelDir, batchLimit, scorerOptions) = LoadModel(plan);
        // Released with the runtime if start-up fails before the hot-swap scorer or the deployment takes it over.
        var handover = Own(new Handover(initial));

        var registry = Own(new AvroSchemaRegistry(_options.SchemaRegistry));
        var decoder = new AvroEventDecoder(registry, readerSchema, plan, _options.Features.MaxMessageBytes)
        {
            DeadLetterWhenRegistryUnavailable = _options.SchemaRegistry.OnUnavailable == RegistryPolicy.DeadLetter,
            RegistryCallBound = registry.CallBound,
            OnRegistryRetry = e => Metrics.OnRetry("decode", e),
        };
        var predictionSchema = await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, k.OutputTopic, isKey: false, PredictionWriter.Schema, ct).ConfigureAwait(false);
        var keys = await KeyWriterAsync(registry, k.OutputTopic, ct).ConfigureAwait(false);

        var redisConfig = ConfigurationOptions.Parse(_options.Redis.Configuration);
        redisConfig.AbortOnConnectFail = false;
        var redis = Own(await ConnectionMultiplexer.ConnectAsync(redisConfig).ConfigureAwait(false));
        var store = new RedisFeatureStore(redis, plan, writeBehind: _options.Redis.WriteBehind) { OnUpdated = Metrics.OnWindowStateUpdate };

        _delivery = Own(DeliveryMode.Create(k, _context.Loggers, _context.OnWedged ?? EndProcess, _context.DecorateCommit));
        IScorer served;
        ShadowPublishing? shadows = null;
        if (deployment is null)
        {
            handover.Release();
            served = Own(HotSwap(initial, plan, scorerOptions));
        }
        else
        {
            handover.Release();   // the deployment releases it from here on, also when it fails to build
            Deployment = Own(await DeploymentAsync(deployment, initial, plan, scorerOptions, batchLimit, registry, ct).ConfigureAwait(false));
            served = Deployment;
            shadows = await ShadowsAsync(registry, ct).ConfigureAwait(false);
        }
        var sink = new KafkaPredictionSink(_delivery.Output, k.OutputTopic, k.DeadLetterTopic,
            new PredictionWriter(predictionSchema.Id, initial.ModelName, initial.ModelVersion, initial.PrimaryScoreIndex) { Transcoder = predictionSchema.CreateTranscoder() },
            _delivery.Commit, keys, shadows);
        var observer = await ObserversAsync(plan, initial.Identity, registry, ct).ConfigureAwait(false);
        var pipelineOptions = _options.Pipeline.ToPipelineOptions(_options.Redis, _options.Model, batchLimit);
        pipelineOptions.PersistBeforePublish = _delivery.Commit.CommitsWithPublishedOutputs;
        _topology = new PipelineTopology(pipelineOptions, plan, decoder, store, served, sink, observer);
        _consumer = Own(new KafkaConsumerLoop(KafkaConfigs.Consumer(k), [k.InputTopic], _topology.Input, _delivery.Commit, Metrics,
            _context.Loggers.CreateLogger<KafkaConsumerLoop>(), TimeSpan.FromMilliseconds(k.RevokeDrainTimeoutMs), TimeSpan.FromMilliseconds(k.PauseAfterMs))
        {
            // Another instance may have written these partitions' entities since this one cached them.
            PartitionsAssigned = store.InvalidateCache,
        });
    }

    /// <summary>Disposes a model unless it was handed over to its owner.</summary>
    private sealed class Handover(IDisposable model) : IDisposable
    {
        private IDisposable? _model = model;
        public void Release() => _model = null;
        public void Dispose() => _model?.Dispose();
    }

    /// <summary>The deployment being served (Model:Deployment), or null when the processor serves one model.</summary>
    public DeploymentScorer? Deployment { get; private set; }

    /// <summary>The deployment's metrics and comparison reports (with a deployment).</summary>
    public DeploymentTelemetry? DeploymentTelemetry { get; private set; }

    private async Task<PredictionKeyWriter> KeyWriterAsync(IAvroSchemaRegistry registry, string topic, CancellationToken ct) =>
        _options.Kafka.OutputKeyFormat == OutputKeyFormat.Avro
            ? PredictionKeyWriter.Avro((await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, topic, isKey: true, PredictionKeyWriter.AvroSchema, ct).ConfigureAwait(false)).Id)
            : PredictionKeyWriter.Utf8;

    /// <summary>The first model, checked and warmed, its directory, and the batch size the pipeline forms (autotuned on it when asked).</summary>
    private (OnnxScorer Initial, string ModelDir, int BatchLimit, OnnxScorerOptions ScorerOptions) LoadModel(FeaturePlan plan)
    {
        var m = _options.Model;
        var modelDir = ModelRepository.Resolve(_context.ResolvePath(m.Repository), m.Name, m.Version);
        ExecutionDevice.TryParse(m.Device, out var device, out _);
        var scorerOptions = new OnnxScorerOptions { IntraOpThreads = m.IntraOpThreads, Device = device, CudaProviderOptions = m.Cuda };
        var initial = new OnnxScorer(modelDir, plan, scorerOptions);
        int batchLimit;
        try
        {
            RuntimeLog.ModelLoaded(_log, initial.ModelName, initial.ModelVersion, modelDir, plan.Name, plan.Version, plan.FeatureCount, initial.OutputWidth);
            foreach (var warning in initial.Warnings) RuntimeLog.ModelWarning(_log, warning);
            if (initial.FallbackReason is { } why) RuntimeLog.DeviceFallback(_log, why);
            // Later versions (hot swap, other models of a deployment) run where the first one does.
            if (device.Kind == ExecutionDeviceKind.Auto)
                scorerOptions.Device = initial.ExecutionProvider == "cpu" ? ExecutionDevice.Cpu : new ExecutionDevice(ExecutionDeviceKind.Cuda, device.DeviceId);
            batchLimit = m.AutotuneBatchSize ? Autotune(initial, plan, $"{modelDir}|{initial.ExecutionProvider}") : _options.Pipeline.MaxBatchSize;
        }
        catch
        {
            initial.Dispose();
            throw;
        }
        Metrics.OnModelLoaded(initial.ModelName, initial.ModelVersion, initial.ExecutionProvider, initial.FallbackReason is not null, batchLimit);
        return (initial, modelDir, batchLimit, scorerOptions);
    }

    /// <summary>One model; under Model:Version=latest it follows the repository (new versions are loaded, warmed and swapped in).</summary>
    private HotSwapScorer HotSwap(OnnxScorer initial, FeaturePlan plan, OnnxScorerOptions scorerOptions)
    {
        var m = _options.Model;
        var watch = m.Version == "latest" ? TimeSpan.FromMilliseconds(m.WatchIntervalMs) : TimeSpan.Zero;
        return new HotSwapScorer(initial, _context.ResolvePath(m.Repository), m.Name, plan, scorerOptions,
            _context.Loggers.CreateLogger<HotSwapScorer>(), watch)
        {
            Swapped = (previous, next, _) => Metrics.OnModelSwapped(previous.Name, previous.Version, next.Name, next.Version),
            Rejected = (_, _) => Metrics.OnModelRejected(),
        };
    }

    private string? _deploymentPath;

    /// <summary>Model:Deployment: the deployment file, whose champion replaces Model:Name and Model:Version.</summary>
    private DeploymentSpec? LoadDeployment()
    {
        var m = _options.Model;
        if (m.LoadDeployment(_context.ResolvePath) is not var (spec, path)) return null;
        m.Name = spec.Champion.Name;
        m.Version = spec.Champion.Version;
        _deploymentPath = path;
        return spec;
    }

    /// <summary>
    /// The deployment's models around the champion already loaded, its telemetry (metrics, comparison reports on the
    /// comparison topic) and the watcher that applies a higher version of the file between two batches.
    /// </summary>
    private async Task<DeploymentScorer> DeploymentAsync(DeploymentSpec spec, OnnxScorer champion, FeaturePlan plan, OnnxScorerOptions scorerOptions,
        int capacity, IAvroSchemaRegistry registry, CancellationToken ct)
    {
        var m = _options.Model;
        var settings = new DeploymentSettings(_deploymentPath!, _context.ResolvePath(m.Repository), plan, scorerOptions, capacity, champion.OutputWidth,
            m.ComparisonWindowEvents, m.DecisionThreshold, m.OnError == ModelErrorPolicy.Fallback);
        var log = _context.Loggers.CreateLogger<DeploymentScorer>();
        var loader = new DeploymentLoader(settings, log);
        var first = new DeployedModel(spec.Champion, champion, capacity, plan.FeatureCount);
        ServingDeployment serving;
        try
        {
            serving = loader.Load(spec, [first]);
        }
        catch
        {
            first.Dispose();
            throw;
        }
        var k = _options.Kafka;
        var comparisonTopic = k.EffectiveComparisonTopic();
        try
        {
            var comparisonSchema = spec.Shadows.Count > 0 || spec.Canary is not null
                ? await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, comparisonTopic, isKey: false, DeploymentTelemetry.Schema, ct).ConfigureAwait(false)
                : null;
            DeploymentTelemetry = new DeploymentTelemetry(_context.MetricFactory, _delivery.Telemetry, comparisonTopic, comparisonSchema,
                _context.Loggers.CreateLogger<DeploymentTelemetry>());
        }
        catch
        {
            loader.Release(serving, []);
            throw;
        }
        DeploymentLog.Loaded(_log, spec.Version, _deploymentPath!, DeploymentScorer.Describe(serving), k.EffectiveShadowTopic());
        var telemetry = DeploymentTelemetry;
        return new DeploymentScorer(serving, loader, () => (_consumer?.TotalLag is { } lag ? lag + _topology.QueuedRecords : null, _consumer?.InputRate),
            new ModelInfoOnChange(telemetry, Metrics), log, TimeSpan.FromMilliseconds(m.WatchIntervalMs));
    }

    /// <summary>The model info series follow the champion across deployment versions.</summary>
    private sealed class ModelInfoOnChange(DeploymentTelemetry inner, ProcessorMetrics metrics) : IDeploymentObserver
    {
        public void OnScored(DeployedModel model, ServingArm arm, int rows, TimeSpan elapsed) => inner.OnScored(model, arm, rows, elapsed);
        public void OnTierSwitched(ServingDeployment deployment, TierSwitch change) => inner.OnTierSwitched(deployment, change);
        public void OnChampionFailed(ServingDeployment deployment, Exception error) => inner.OnChampionFailed(deployment, error);
        public void OnComparison(ServingDeployment deployment, Challenger challenger, ComparisonReport report) => inner.OnComparison(deployment, challenger, report);

        public void OnDeploymentChanged(ServingDeployment? previous, ServingDeployment next)
        {
            inner.OnDeploymentChanged(previous, next);
            if (previous is not null && previous.Champion.Reference != next.Champion.Reference)
                metrics.OnModelSwapped(previous.Champion.Identity.Name, previous.Champion.Identity.Version, next.Champion.Identity.Name, next.Champion.Identity.Version);
        }
    }

    /// <summary>How the deployment's shadow predictions are published: the shadow topic, on the telemetry producer.</summary>
    private async Task<ShadowPublishing> ShadowsAsync(IAvroSchemaRegistry registry, CancellationToken ct)
    {
        var topic = _options.Kafka.EffectiveShadowTopic();
        var schema = await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, topic, isKey: false, PredictionWriter.Schema, ct).ConfigureAwait(false);
        var keys = await KeyWriterAsync(registry, topic, ct).ConfigureAwait(false);
        var deployment = Deployment!;
        return new ShadowPublishing(topic, _delivery.Telemetry, () => deployment.Current.Shadows,
            model => new PredictionWriter(schema.Id, model.Name, model.Version, model.PrimaryScoreIndex) { Transcoder = schema.CreateTranscoder() },
            keys, (model, delivered) => Metrics.ShadowPredictions.WithLabels(model, delivered ? "delivered" : "failed").Inc());
    }

    /// <summary>
    /// Times scoring per batch size and picks the batch limit. A restart reuses the choice made for the same
    /// model on the same device; a version swapped in later keeps it (the batch buffers are sized at start).
    /// </summary>
    private int Autotune(OnnxScorer model, FeaturePlan plan, string key)
    {
        var cache = _context.Autotune;
        if (cache.Result is null || cache.Key != key)
        {
            cache.Result = BatchSweep.Autotune(model, plan, _options.Pipeline.MaxBatchSize,
                TimeSpan.FromMilliseconds(_options.Model.BatchLatencyBudgetMs), TimeSpan.FromMilliseconds(300));
            cache.Key = key;
        }
        var tuned = cache.Result;
        if (tuned.ChosenMeasurement.P99Ms > tuned.BudgetMs) RuntimeLog.AutotuneOverBudget(_log, tuned.BudgetMs, tuned.ChosenMeasurement.P99Ms);
        Metrics.OnAutotuned(tuned.Measurements.Select(x => (x.BatchSize, x.EventsPerSecond)));
        RuntimeLog.Autotuned(_log, tuned.Chosen, tuned.ChosenMeasurement.EventsPerSecond, tuned.ChosenMeasurement.P99Ms, tuned.BudgetMs,
            string.Join(", ", tuned.Measurements.Select(x => string.Create(CultureInfo.InvariantCulture,
                $"{x.BatchSize}: {x.EventsPerSecond:N0}/s p99 {x.P99Ms:0.###} ms"))));
        return tuned.Chosen;
    }

    /// <summary>Metrics, then drift (when on), then the host's observer.</summary>
    private async Task<IPipelineObserver> ObserversAsync(FeaturePlan plan, ModelIdentity champion, IAvroSchemaRegistry registry, CancellationToken ct)
    {
        IPipelineObserver observer = Metrics;
        var drift = await CreateDriftAsync(plan, champion, registry, ct).ConfigureAwait(false);
        if (drift is not null)
        {
            ModelDrift = drift;
            observer = new CompositeObserver(observer, Own(drift));
        }
        return _context.Observer is { } extra ? new CompositeObserver(observer, extra) : observer;
    }

    /// <summary>
    /// Drift per model: each model that scores is monitored against the reference profile in its version directory
    /// (Drift:Profile, when set, is the first champion's instead); a model without one is not monitored.
    /// </summary>
    private async Task<ModelDrift?> CreateDriftAsync(FeaturePlan plan, ModelIdentity champion, IAvroSchemaRegistry registry, CancellationToken ct)
    {
        var d = _options.Drift;
        if (!d.Enabled) return null;
        var schema = await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, d.Topic, isKey: false, DriftReportWriter.Schema, ct).ConfigureAwait(false);
        var metrics = Metrics.Drift();
        var explicitProfile = d.Profile is { Length: > 0 } p ? _context.ResolvePath(p) : null;
        var first = true;
        DriftPublisher? Create(ModelIdentity model)
        {
            var path = first && explicitProfile is not null ? explicitProfile : Path.Combine(model.Directory ?? ".", ReferenceProfile.FileName);
            first = false;
            if (!File.Exists(path))
            {
                RuntimeLog.DriftOff(_log, model.ToString(), path);
                return null;
            }
            var profile = ReferenceProfile.Load(path);
            if (profile.Model != model.Name || profile.ModelVersion != model.Version)
            {
                RuntimeLog.DriftProfileMismatch(_log, path, $"{profile.Model}@{profile.ModelVersion}", model.ToString());
                return null;
            }
            RuntimeLog.DriftOn(_log, model.ToString(), path, d.Topic, d.WindowSeconds > 0 ? $"{d.WindowSeconds} s" : $"{d.WindowEvents} events");
            // Drift reports are telemetry, not outputs: they never go into a transaction.
            return new DriftPublisher(new DriftMonitor(profile, plan, d), model.PrimaryScoreIndex, _delivery.Telemetry, d.Topic, schema, model.ToString(),
                metrics, _context.Loggers.CreateLogger<DriftPublisher>(), d.WindowSeconds);
        }
        // The explicit profile must be the first model's: checked now, so a wrong one fails at start.
        if (explicitProfile is not null)
        {
            if (!File.Exists(explicitProfile)) throw new FileNotFoundException($"Drift:Profile '{explicitProfile}' does not exist.");
            var profile = ReferenceProfile.Load(explicitProfile);
            if (profile.Model != _options.Model.Name || (_options.Model.Version != "latest" && profile.ModelVersion != _options.Model.Version))
                throw new InvalidDataException($"{explicitProfile}: the reference profile is for model {profile.Model}@{profile.ModelVersion}, the loaded model is {_options.Model.Name}@{_options.Model.Version}.");
        }
        var drift = new ModelDrift(Create, () => Deployment);
        drift.Prepare(champion);
        return drift;
    }

    /// <summary>Drift per model (when on).</summary>
    public ModelDrift? ModelDrift { get; private set; }

    /// <summary>
    /// Consumes and processes until <paramref name="stop"/> (then drains, commits and closes) or a failure,
    /// which is rethrown as <see cref="FailurePrecedence"/> chooses it.
    /// </summary>
    public async Task RunAsync(CancellationToken stop)
    {
        var k = _options.Kafka;
        var shutdownTimeout = TimeSpan.FromMilliseconds(_options.Pipeline.ShutdownTimeoutMs);
        using var abort = new CancellationTokenSource();
        var pipeline = _topology.RunAsync(abort.Token);
        var consuming = _consumer.RunAsync(pipeline, shutdownTimeout, stop);
        IsReady = true;
        RuntimeLog.Started(_log, k.InputTopic, k.OutputTopic, k.DeadLetterTopic, k.GroupId);
        var consumeError = await FailureOf(consuming, null).ConfigureAwait(false);
        IsReady = false;
        if (!pipeline.IsCompleted) await abort.CancelAsync().ConfigureAwait(false);
        var pipelineError = await FailureOf(pipeline, abort).ConfigureAwait(false);
        _delivery.FlushTelemetry(shutdownTimeout);
        if (FailurePrecedence.Choose(consumeError, pipelineError, _delivery.Commit.Failure) is { } failure) ExceptionDispatchInfo.Throw(failure);
        RuntimeLog.Stopped(_log, Metrics.PublishedCount, Metrics.DeadLetteredCount);
    }

    /// <summary>The exception <paramref name="task"/> ended with, if any (a cancellation we asked for is none).</summary>
    private static async Task<Exception?> FailureOf(Task task, CancellationTokenSource? cancelledByUs)
    {
        try
        {
            await task.ConfigureAwait(false);
            return null;
        }
        catch (OperationCanceledException) when (cancelledByUs?.IsCancellationRequested == true)
        {
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    private void EndProcess(string why)
    {
        RuntimeLog.ProducerWedged(_log, why);
        Environment.FailFast("StreamInference: transactional producer wedged: " + why);
    }

    private T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Push(disposable);
        return disposable;
    }

    public void Dispose()
    {
        while (_owned.TryPop(out var d)) d.Dispose();
    }
}
