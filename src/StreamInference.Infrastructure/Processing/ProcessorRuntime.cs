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
    /// <summary>The drift monitor, when drift monitoring is on.</summary>
    public DriftMonitor? Drift { get; private set; }
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
        var (scorer, modelDir, batchLimit, scorerOptions) = LoadModel(plan);

        var registry = Own(new AvroSchemaRegistry(_options.SchemaRegistry));
        var decoder = new AvroEventDecoder(registry, readerSchema, plan, _options.Features.MaxMessageBytes)
        {
            DeadLetterWhenRegistryUnavailable = _options.SchemaRegistry.OnUnavailable == RegistryPolicy.DeadLetter,
            RegistryCallBound = registry.CallBound,
            OnRegistryRetry = e => Metrics.OnRetry("decode", e),
        };
        var predictionSchema = await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, k.OutputTopic, isKey: false, PredictionWriter.Schema, ct).ConfigureAwait(false);
        var keys = k.OutputKeyFormat == OutputKeyFormat.Avro
            ? PredictionKeyWriter.Avro((await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, k.OutputTopic, isKey: true, PredictionKeyWriter.AvroSchema, ct).ConfigureAwait(false)).Id)
            : PredictionKeyWriter.Utf8;

        var redisConfig = ConfigurationOptions.Parse(_options.Redis.Configuration);
        redisConfig.AbortOnConnectFail = false;
        var redis = Own(await ConnectionMultiplexer.ConnectAsync(redisConfig).ConfigureAwait(false));
        var store = new RedisFeatureStore(redis, plan) { OnUpdated = Metrics.OnWindowStateUpdate };

        _delivery = Own(DeliveryMode.Create(k, _context.Loggers, _context.OnWedged ?? EndProcess, _context.DecorateCommit));
        var shadows = await ShadowsAsync(deployment, plan, scorerOptions, batchLimit, registry, ct).ConfigureAwait(false);
        var sink = new KafkaPredictionSink(_delivery.Output, k.OutputTopic, k.DeadLetterTopic,
            new PredictionWriter(predictionSchema.Id, scorer.ModelName, scorer.ModelVersion, scorer.PrimaryScoreIndex) { Transcoder = predictionSchema.CreateTranscoder() },
            _delivery.Commit, keys, shadows?.Publishing);
        var observer = await ObserversAsync(plan, scorer, modelDir, registry, ct).ConfigureAwait(false);
        IScorer served = shadows is not { } loaded ? scorer : new DeploymentScorer(scorer, loaded.Models, deployment!, _context.Loggers.CreateLogger<DeploymentScorer>());
        _topology = new PipelineTopology(_options.Pipeline.ToPipelineOptions(_options.Redis, _options.Model, batchLimit), plan, decoder, store, served, sink, observer);
        _consumer = Own(new KafkaConsumerLoop(KafkaConfigs.Consumer(k), [k.InputTopic], _topology.Input, _delivery.Commit, Metrics,
            _context.Loggers.CreateLogger<KafkaConsumerLoop>(), TimeSpan.FromMilliseconds(k.RevokeDrainTimeoutMs), TimeSpan.FromMilliseconds(k.PauseAfterMs)));
    }

    /// <summary>The model (hot-swappable under Model:Version=latest), its directory, and the batch size the pipeline forms.</summary>
    private (HotSwapScorer Scorer, string ModelDir, int BatchLimit, OnnxScorerOptions ScorerOptions) LoadModel(FeaturePlan plan)
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
            // Later versions (hot swap) run where the first one does.
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
        // Model:Version=latest follows the repository: new versions are loaded, warmed and swapped in.
        var watch = m.Version == "latest" ? TimeSpan.FromMilliseconds(m.WatchIntervalMs) : TimeSpan.Zero;
        var scorer = Own(new HotSwapScorer(initial, _context.ResolvePath(m.Repository), m.Name, plan, scorerOptions,
            _context.Loggers.CreateLogger<HotSwapScorer>(), watch)
        {
            Swapped = (previous, next, _) =>
            {
                Metrics.OnModelSwapped(previous.Name, previous.Version, next.Name, next.Version);
                if (Drift is not null) RuntimeLog.DriftStaysOnProfile(_log, previous.ToString(), next.ToString());
            },
            Rejected = (_, _) => Metrics.OnModelRejected(),
        });
        return (scorer, modelDir, batchLimit, scorerOptions);
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

    /// <summary>The deployment's shadow models, loaded like the champion, and how their predictions are published.</summary>
    private async Task<(List<ShadowModel> Models, ShadowPublishing Publishing)?> ShadowsAsync(DeploymentSpec? deployment, FeaturePlan plan,
        OnnxScorerOptions scorerOptions, int capacity, IAvroSchemaRegistry registry, CancellationToken ct)
    {
        if (deployment is not { Shadows.Count: > 0 }) return null;
        var k = _options.Kafka;
        var topic = k.EffectiveShadowTopic();
        var schema = await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, topic, isKey: false, PredictionWriter.Schema, ct).ConfigureAwait(false);
        // Each shadow is owned as soon as it loads: a later start-up failure releases it with the runtime.
        var models = new List<ShadowModel>();
        foreach (var spec in deployment.Shadows)
        {
            var dir = ModelRepository.Resolve(_context.ResolvePath(_options.Model.Repository), spec.Model.Name, spec.Model.Version);
            var scorer = new OnnxScorer(dir, plan, scorerOptions);
            models.Add(Own(new ShadowModel(scorer, spec, capacity)));
            RuntimeLog.ModelLoaded(_log, scorer.ModelName, scorer.ModelVersion, dir, plan.Name, plan.Version, plan.FeatureCount, scorer.OutputWidth);
            foreach (var warning in scorer.Warnings) RuntimeLog.ModelWarning(_log, warning);
        }
        DeploymentLog.Loaded(_log, deployment.Version, _deploymentPath!, deployment.Champion.ToString(),
            string.Join(", ", deployment.Shadows.Select(x => x.Sample < 1 ? FormattableString.Invariant($"{x.Model} ({x.Sample:P0} of entities)") : x.Model.ToString())), topic);
        var keys = k.OutputKeyFormat == OutputKeyFormat.Avro
            ? PredictionKeyWriter.Avro((await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, topic, isKey: true, PredictionKeyWriter.AvroSchema, ct).ConfigureAwait(false)).Id)
            : PredictionKeyWriter.Utf8;
        var outcomes = models.Select(x => (Delivered: Metrics.ShadowPredictions.WithLabels(x.Identity.ToString(), "delivered"),
            Failed: Metrics.ShadowPredictions.WithLabels(x.Identity.ToString(), "failed"))).ToArray();
        var publishing = new ShadowPublishing(topic, _delivery.Telemetry, [.. models.Select(x => (x, new PredictionWriter(schema.Id, x.Scorer.ModelName, x.Scorer.ModelVersion, x.Scorer.PrimaryScoreIndex)
        {
            Transcoder = schema.CreateTranscoder(),
        }))], keys, (i, delivered) => (delivered ? outcomes[i].Delivered : outcomes[i].Failed).Inc());
        return (models, publishing);
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
    private async Task<IPipelineObserver> ObserversAsync(FeaturePlan plan, HotSwapScorer scorer, string modelDir, IAvroSchemaRegistry registry, CancellationToken ct)
    {
        IPipelineObserver observer = Metrics;
        var drift = await CreateDriftAsync(plan, scorer, modelDir, registry, ct).ConfigureAwait(false);
        if (drift is not null)
        {
            Drift = drift.Monitor;
            observer = new CompositeObserver(observer, Own(drift));
        }
        return _context.Observer is { } extra ? new CompositeObserver(observer, extra) : observer;
    }

    private async Task<DriftPublisher?> CreateDriftAsync(FeaturePlan plan, HotSwapScorer scorer, string modelDir, IAvroSchemaRegistry registry, CancellationToken ct)
    {
        var d = _options.Drift;
        if (!d.Enabled) return null;
        var path = d.Profile is { Length: > 0 } p ? _context.ResolvePath(p) : Path.Combine(modelDir, ReferenceProfile.FileName);
        if (!File.Exists(path))
        {
            RuntimeLog.DriftOff(_log, path);
            return null;
        }
        var profile = ReferenceProfile.Load(path);
        if (profile.Model != scorer.ModelName || profile.ModelVersion != scorer.ModelVersion)
            throw new InvalidDataException($"{path}: the reference profile is for model {profile.Model}@{profile.ModelVersion}, the loaded model is {scorer.ModelName}@{scorer.ModelVersion}.");
        var monitor = new DriftMonitor(profile, plan, d);
        var schema = await OutputSchema.ResolveAsync(registry, _options.SchemaRegistry, d.Topic, isKey: false, DriftReportWriter.Schema, ct).ConfigureAwait(false);
        RuntimeLog.DriftOn(_log, path, d.Topic, d.WindowSeconds > 0 ? $"{d.WindowSeconds} s" : $"{d.WindowEvents} events");
        // Drift reports are telemetry, not outputs: they never go into a transaction.
        return new DriftPublisher(monitor, scorer.PrimaryScoreIndex, _delivery.Telemetry, d.Topic, schema, $"{scorer.ModelName}@{scorer.ModelVersion}",
            Metrics.Drift(), _context.Loggers.CreateLogger<DriftPublisher>(), d.WindowSeconds);
    }

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
