using Confluent.Kafka;
using StreamInference.Core.Drift;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;

namespace StreamInference.Infrastructure.Processing;

/// <summary>
/// Everything <c>serve</c> needs, bound from configuration (appsettings.json, STREAMINFERENCE__*
/// environment variables, flags). Section names are the top-level keys.
/// </summary>
public sealed class ProcessorOptions
{
    public KafkaOptions Kafka { get; set; } = new();
    public SchemaRegistryOptions SchemaRegistry { get; set; } = new() { Url = "http://localhost:8081" };
    public RedisOptions Redis { get; set; } = new();
    public ModelOptions Model { get; set; } = new();
    public FeatureOptions Features { get; set; } = new();
    public PipelineSettings Pipeline { get; set; } = new();
    public HttpOptions Http { get; set; } = new();
    public DriftOptions Drift { get; set; } = new();
    /// <summary>Read by <c>streaminference evaluate</c> only: the label join and live performance per model.</summary>
    public EvaluationOptions Evaluation { get; set; } = new();
}

/// <summary>
/// <c>streaminference evaluate</c>: its own consumer group over the prediction, shadow and labels topics; labels are
/// joined to predictions in Redis and each model's performance is reported per window.
/// </summary>
public sealed class EvaluationOptions
{
    /// <summary>Consumer group; empty: <c>&lt;Kafka:GroupId&gt;-evaluate</c>.</summary>
    public string GroupId { get; set; } = "";
    public string EffectiveGroupId(KafkaOptions kafka) => string.IsNullOrWhiteSpace(GroupId) ? $"{kafka.GroupId}-evaluate" : GroupId;
    /// <summary>Ground-truth labels (schemas/label.avsc), keyed by entity.</summary>
    public string LabelsTopic { get; set; } = "labels";
    /// <summary>Where the per-window EvaluationReports go (schemas/evaluation-report.avsc); empty: <c>&lt;Kafka:OutputTopic&gt;.evaluation</c>.</summary>
    public string Topic { get; set; } = "";
    public string EffectiveTopic(KafkaOptions kafka) => string.IsNullOrWhiteSpace(Topic) ? $"{kafka.OutputTopic}.evaluation" : Topic;
    /// <summary>How long, in event time, a prediction waits for its label and a label for its prediction; 0: twice the feature set's <c>label.knownAfter</c>.</summary>
    public long HorizonMs { get; set; }
    /// <summary>
    /// How much longer than the horizon the join's state stays in Redis. Redis expires keys by wall-clock time while the
    /// join decides by event time; the grace keeps an evaluator that runs behind (a backlog, a restart) from finding
    /// its entries gone.
    /// </summary>
    public long ExpiryGraceMs { get; set; } = 3_600_000;
    /// <summary>Tumbling event-time windows; each is final (reported) once the join's clock passes its end plus the horizon.</summary>
    public long WindowMs { get; set; } = 3_600_000;
    /// <summary>Label-arrival windows: every N labelled predictions of a model (the freshest view; not kept across restarts).</summary>
    public int ArrivalWindowEvents { get; set; } = 2000;
    /// <summary>How long a final window's labelled predictions stay in Redis for <c>model promote --if-better</c>.</summary>
    public long RetentionMs { get; set; } = 86_400_000;
    /// <summary>Also evaluate the shadow models' predictions (Kafka:ShadowTopic).</summary>
    public bool IncludeShadow { get; set; } = true;
    /// <summary>Significance of the AUC intervals in the reports and of the promotion gate.</summary>
    public double Alpha { get; set; } = 0.05;
    /// <summary>How often final windows are looked for and reported.</summary>
    public int ReportIntervalMs { get; set; } = 1000;

    public void Validate(ProcessorOptions o, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(LabelsTopic)) errors.Add("Evaluation:LabelsTopic is required.");
        var topic = EffectiveTopic(o.Kafka);
        if (new[] { o.Kafka.InputTopic, o.Kafka.OutputTopic, o.Kafka.DeadLetterTopic, o.Kafka.EffectiveShadowTopic(), LabelsTopic }.Contains(topic))
            errors.Add("Evaluation:Topic must differ from the input, output, dead-letter, shadow and labels topics.");
        if (LabelsTopic == o.Kafka.OutputTopic || LabelsTopic == o.Kafka.InputTopic) errors.Add("Evaluation:LabelsTopic must differ from Kafka:InputTopic and Kafka:OutputTopic.");
        if (HorizonMs < 0) errors.Add($"Evaluation:HorizonMs must be 0 (from the feature set) or positive (was {HorizonMs}).");
        if (WindowMs is < 1 or > 31L * 86_400_000) errors.Add($"Evaluation:WindowMs must be between 1 and 31 days in ms (was {WindowMs}).");
        if (ArrivalWindowEvents is < 10 or > 10_000_000) errors.Add($"Evaluation:ArrivalWindowEvents must be between 10 and 10000000 (was {ArrivalWindowEvents}).");
        if (ExpiryGraceMs < 0) errors.Add($"Evaluation:ExpiryGraceMs must be 0 or positive (was {ExpiryGraceMs}).");
        if (RetentionMs < 0) errors.Add($"Evaluation:RetentionMs must be 0 or positive (was {RetentionMs}).");
        if (Alpha is <= 0 or >= 0.5) errors.Add($"Evaluation:Alpha must be in (0, 0.5) (was {Alpha}).");
        if (ReportIntervalMs is < 10 or > 3_600_000) errors.Add($"Evaluation:ReportIntervalMs must be between 10 and 3600000 (was {ReportIntervalMs}).");
    }
}

/// <summary>
/// Online drift monitoring against the model's reference profile (see <c>streaminference profile</c>); the
/// windowing and thresholds are <see cref="DriftSettings"/>'s, with their defaults.
/// </summary>
public sealed class DriftOptions : DriftSettings
{
    /// <summary>On by default when the model directory has a reference-profile.json.</summary>
    public bool Enabled { get; set; } = true;
    /// <summary>Reference profile; default: reference-profile.json in the model's version directory.</summary>
    public string? Profile { get; set; }
    /// <summary>Topic the per-window drift reports (schemas/drift-report.avsc) are published to.</summary>
    public string Topic { get; set; } = "drift-reports";
}

public sealed class KafkaOptions
{
    /// <summary>Environment: KAFKA_BOOTSTRAP_SERVERS.</summary>
    public string BootstrapServers { get; set; } = "localhost:9092";
    public string GroupId { get; set; } = "streaminference";
    public string InputTopic { get; set; } = "payments";
    public string OutputTopic { get; set; } = "predictions";
    public string DeadLetterTopic { get; set; } = "payments.dlq";
    /// <summary>Where a deployment's shadow models publish (Model:Deployment); empty: <c>&lt;OutputTopic&gt;.shadow</c>.</summary>
    public string ShadowTopic { get; set; } = "";
    /// <summary>The shadow topic in use: ShadowTopic, else <c>&lt;OutputTopic&gt;.shadow</c>.</summary>
    public string EffectiveShadowTopic() => string.IsNullOrWhiteSpace(ShadowTopic) ? $"{OutputTopic}.shadow" : ShadowTopic;
    /// <summary>Where a deployment's live comparison reports go (one Avro ComparisonReport per window and pair); empty: <c>&lt;OutputTopic&gt;.comparison</c>.</summary>
    public string ComparisonTopic { get; set; } = "";
    public string EffectiveComparisonTopic() => string.IsNullOrWhiteSpace(ComparisonTopic) ? $"{OutputTopic}.comparison" : ComparisonTopic;
    /// <summary>Prediction keys: String (UTF-8 entity key, default) or Avro (a Confluent-framed Avro string; schema under the key subject).</summary>
    public OutputKeyFormat OutputKeyFormat { get; set; } = OutputKeyFormat.String;
    /// <summary>Any Confluent.Kafka <see cref="ConsumerConfig"/> property (e.g. SecurityProtocol, SaslMechanism).</summary>
    public ConsumerConfig Consumer { get; set; } = new();
    /// <summary>Any Confluent.Kafka <see cref="ProducerConfig"/> property.</summary>
    public ProducerConfig Producer { get; set; } = new();
    /// <summary>How long a revoked partition waits for its in-flight records before handing over.</summary>
    public int RevokeDrainTimeoutMs { get; set; } = 5000;
    /// <summary>
    /// How long the pipeline's input queue may stay full before the consumer pauses its partitions. Until
    /// then the consumer just stops reading and librdkafka stops fetching at its own queue limits; a pause
    /// discards what librdkafka had fetched ahead, to be fetched again on resume, so it is kept for stalls
    /// (Redis or the model stuck), where it lets the consumer keep serving group callbacks. 0 = pause at once.
    /// </summary>
    public int PauseAfterMs { get; set; } = 1000;
    /// <summary>
    /// AtLeastOnce (default): offsets are committed after the outputs were acknowledged; a crash
    /// re-processes the in-flight window. ExactlyOnce: outputs and offsets are committed in Kafka
    /// transactions; read_committed consumers see each input's outcome once.
    /// </summary>
    public DeliveryGuarantee Delivery { get; set; } = DeliveryGuarantee.AtLeastOnce;
    /// <summary>ExactlyOnce: transactional.id; default streaminference-&lt;group&gt;-&lt;host name&gt; (stable per pod/host, so a restart fences its predecessor).</summary>
    public string? TransactionalId { get; set; }
    /// <summary>ExactlyOnce: how often the open transaction is committed (latency seen by read_committed consumers).</summary>
    public int TransactionCommitIntervalMs { get; set; } = 100;
    /// <summary>ExactlyOnce: bound on each transactional call (init, send offsets, commit, abort).</summary>
    public int TransactionTimeoutMs { get; set; } = 30_000;
    public string EffectiveTransactionalId => TransactionalId is { Length: > 0 } id ? id : $"streaminference-{GroupId}-{Environment.MachineName}";
}

public enum DeliveryGuarantee
{
    AtLeastOnce,
    ExactlyOnce,
}

public sealed class RedisOptions
{
    /// <summary>StackExchange.Redis configuration string, e.g. "localhost:6379,password=…". Environment: REDIS_URL (redis://…).</summary>
    public string Configuration { get; set; } = "localhost:6379";
    /// <summary>
    /// Redis unreachable or timing out. Wait (default): retry with backoff; consumption pauses until it
    /// is back, nothing is scored without its features. Defaults: after FallbackAfterMs, score with the
    /// window and lookup features at their defaults and mark the predictions degraded (those events are
    /// then missing from their windows' aggregates).
    /// </summary>
    public FeatureStorePolicy OnUnavailable { get; set; } = FeatureStorePolicy.Wait;
    public int FallbackAfterMs { get; set; } = 1000;
    /// <summary>
    /// Defaults policy: once at least two batches (and at least half of those in FallbackAfterMs + ProbeIntervalMs)
    /// got no answer in time, batches skip Redis (circuit breaker open) and probe it again after this long.
    /// </summary>
    public int ProbeIntervalMs { get; set; } = 1000;
    /// <summary>
    /// True (default): a batch is scored on the window state this instance holds while its state write runs;
    /// its offsets complete when the write is acknowledged too. False: the batch waits for the write, and an
    /// entity another writer changed meanwhile is re-read before scoring (exact windows even when two instances
    /// write one entity at once, at the cost of a Redis round trip of script time per batch).
    /// </summary>
    public bool WriteBehind { get; set; } = true;
}

public enum FeatureStorePolicy
{
    Wait,
    Defaults,
}

public sealed class ModelOptions
{
    /// <summary>Model repository directory: &lt;repository&gt;/&lt;name&gt;/&lt;version&gt;/{model.onnx, manifest.json}.</summary>
    public string Repository { get; set; } = "models";
    public string Name { get; set; } = "fraud-gbm";
    /// <summary>A version directory name, or "latest".</summary>
    public string Version { get; set; } = "latest";
    /// <summary>
    /// A deployment file (deployment.yaml: champion and shadow models, pinned versions), relative to the repository
    /// or absolute. When set, its champion replaces Name/Version, its canary serves a sticky share of entities, its
    /// shadows are scored beside it and published to Kafka:ShadowTopic, its fallback tier takes over under load; the
    /// file is polled every WatchIntervalMs and a higher version is swapped in without a restart. Empty: one model, Name/Version.
    /// </summary>
    public string Deployment { get; set; } = "";

    /// <summary>
    /// The deployment file Model:Deployment names (relative to the repository, or absolute), read and checked against
    /// what the processor serves; null when none is set. Throws <see cref="StreamInference.Core.Deployment.DeploymentException"/>.
    /// </summary>
    public (StreamInference.Core.Deployment.DeploymentSpec Spec, string Path)? LoadDeployment(Func<string, string> resolvePath)
    {
        if (string.IsNullOrWhiteSpace(Deployment)) return null;
        var path = System.IO.Path.IsPathRooted(Deployment) ? Deployment : System.IO.Path.Combine(resolvePath(Repository), Deployment);
        return (StreamInference.Core.Deployment.DeploymentSpec.LoadFile(path), path);
    }
    public int IntraOpThreads { get; set; }
    /// <summary>cpu (default), cuda or cuda:&lt;id&gt; (fails at start when it cannot be met), or auto (CUDA when it loads, else the CPU with a warning).</summary>
    public string Device { get; set; } = "cpu";
    /// <summary>
    /// With Version=latest: how often the repository is checked for a newer version, which is then
    /// loaded, warmed and swapped in between batches (a version that fails to load is rejected and
    /// logged). 0 turns watching off.
    /// </summary>
    public int WatchIntervalMs { get; set; } = 10_000;
    /// <summary>
    /// CUDA execution provider options by ONNX Runtime's names, e.g. Model:Cuda:gpu_mem_limit=8589934592,
    /// Model:Cuda:arena_extend_strategy=kSameAsRequested, Model:Cuda:cudnn_conv_algo_search=HEURISTIC
    /// (device_id comes from Model:Device). Unknown names fail at start, with ONNX Runtime's message.
    /// </summary>
    public Dictionary<string, string> Cuda { get; set; } = new(StringComparer.Ordinal);
    /// <summary>
    /// At model load, time scoring at batch sizes 1, 2, 4, … up to Pipeline:MaxBatchSize and serve with the
    /// smallest one whose throughput is within 5 % of the best among those whose p99 time per batch fits
    /// BatchLatencyBudgetMs (logged, and exported as streaminference_batch_size_limit). Worth it for large
    /// models, on GPUs above all; the example logistic regression is fastest at the ceiling anyway.
    /// </summary>
    public bool AutotuneBatchSize { get; set; }
    /// <summary>Autotune: the longest a single scoring call may take (p99), in milliseconds.</summary>
    public double BatchLatencyBudgetMs { get; set; } = 20;
    /// <summary>A batch the model fails to score (twice): DeadLetter its records (reason model-error) and go on, or Stop.</summary>
    public ModelErrorPolicy OnError { get; set; } = ModelErrorPolicy.DeadLetter;
    /// <summary>Live champion/challenger comparison (canary, shadows): events per window, one report per window.</summary>
    public int ComparisonWindowEvents { get; set; } = 2000;
    /// <summary>The decision threshold on the primary score that the comparison's agreement is measured at.</summary>
    public double DecisionThreshold { get; set; } = 0.5;
}

public enum ModelErrorPolicy
{
    DeadLetter,
    Stop,
    /// <summary>The deployment's fallback tier serves a batch the champion fails to score (Model:Deployment with a fallback).</summary>
    Fallback,
}

public sealed class FeatureOptions
{
    public string Definition { get; set; } = "schemas/features/card_payments.yaml";
    /// <summary>Avro reader schema of the input events; writer schemas are resolved against it.</summary>
    public string ReaderSchema { get; set; } = "schemas/payment-event.avsc";
    /// <summary>Records larger than this are dead-lettered.</summary>
    public int MaxMessageBytes { get; set; } = 1 << 20;
}

public sealed class PipelineSettings
{
    public int MaxBatchSize { get; set; } = 256;
    public int MaxBatchDelayMs { get; set; } = 5;
    public int InputQueueCapacity { get; set; } = 4096;
    public int MaxInFlightBatches { get; set; } = 8;
    /// <summary>On shutdown, how long to wait for in-flight records to be published and acknowledged.</summary>
    public int ShutdownTimeoutMs { get; set; } = 15000;

    /// <param name="maxBatchSize">The autotuned batch size, when Model:AutotuneBatchSize chose one.</param>
    public PipelineOptions ToPipelineOptions(RedisOptions redis, ModelOptions model, int? maxBatchSize = null) => new()
    {
        MaxBatchSize = maxBatchSize ?? MaxBatchSize,
        MaxBatchDelay = TimeSpan.FromMilliseconds(MaxBatchDelayMs),
        InputQueueCapacity = InputQueueCapacity,
        MaxInFlightBatches = MaxInFlightBatches,
        FeatureStoreFallbackAfter = redis.OnUnavailable == FeatureStorePolicy.Defaults ? TimeSpan.FromMilliseconds(redis.FallbackAfterMs) : null,
        FeatureStoreProbeInterval = TimeSpan.FromMilliseconds(redis.ProbeIntervalMs),
        DeadLetterOnModelError = model.OnError is ModelErrorPolicy.DeadLetter or ModelErrorPolicy.Fallback,   // the fallback failing too: dead-letter
    };
}

public sealed class HttpOptions
{
    /// <summary>Port of /metrics, /healthz and /readyz; 0 picks a free port.</summary>
    public int Port { get; set; } = 9464;
    public string Host { get; set; } = "0.0.0.0";
}

/// <summary>Checks a <see cref="ProcessorOptions"/>; every message names the setting to fix.</summary>
public static class ProcessorOptionsValidator
{
    public static IReadOnlyList<string> Validate(ProcessorOptions o, Func<string, string> resolvePath)
    {
        var errors = new List<string>();
        void Require(string? value, string key)
        {
            if (string.IsNullOrWhiteSpace(value)) errors.Add($"{key} is required.");
        }
        void Range(int value, int min, int max, string key)
        {
            if (value < min || value > max) errors.Add($"{key} must be between {min} and {max} (was {value}).");
        }
        void FileExists(string value, string key)
        {
            if (string.IsNullOrWhiteSpace(value)) errors.Add($"{key} is required.");
            else if (!File.Exists(resolvePath(value))) errors.Add($"{key}: file '{value}' does not exist.");
        }

        Require(o.Kafka.BootstrapServers, "Kafka:BootstrapServers (env KAFKA_BOOTSTRAP_SERVERS)");
        Require(o.Kafka.GroupId, "Kafka:GroupId");
        Require(o.Kafka.InputTopic, "Kafka:InputTopic");
        Require(o.Kafka.OutputTopic, "Kafka:OutputTopic");
        Require(o.Kafka.DeadLetterTopic, "Kafka:DeadLetterTopic");
        if (o.Kafka.InputTopic == o.Kafka.OutputTopic || o.Kafka.InputTopic == o.Kafka.DeadLetterTopic)
            errors.Add("Kafka:OutputTopic and Kafka:DeadLetterTopic must differ from Kafka:InputTopic.");
        Range(o.Kafka.RevokeDrainTimeoutMs, 0, 300_000, "Kafka:RevokeDrainTimeoutMs");
        Range(o.Kafka.PauseAfterMs, 0, 60_000, "Kafka:PauseAfterMs");
        if (!StreamInference.Infrastructure.Onnx.ExecutionDevice.TryParse(o.Model.Device, out _, out var deviceError)) errors.Add(deviceError);
        Kafka.Commit.DeliveryMode.Validate(o.Kafka, errors);
        Range(o.Kafka.TransactionCommitIntervalMs, 10, 60_000, "Kafka:TransactionCommitIntervalMs");
        Range(o.Kafka.TransactionTimeoutMs, 1_000, 900_000, "Kafka:TransactionTimeoutMs");
        if (!Enum.IsDefined(o.Kafka.OutputKeyFormat)) errors.Add($"Kafka:OutputKeyFormat must be String or Avro (was {o.Kafka.OutputKeyFormat}).");
        o.SchemaRegistry.Validate(errors);
        Require(o.Redis.Configuration, "Redis:Configuration (env REDIS_URL)");
        if (!Enum.IsDefined(o.Redis.OnUnavailable)) errors.Add($"Redis:OnUnavailable must be Wait or Defaults (was {o.Redis.OnUnavailable}).");
        Range(o.Redis.FallbackAfterMs, 10, 600_000, "Redis:FallbackAfterMs");
        Range(o.Redis.ProbeIntervalMs, 500, 600_000, "Redis:ProbeIntervalMs");
        Require(o.Model.Repository, "Model:Repository");
        Require(o.Model.Name, "Model:Name");
        Require(o.Model.Version, "Model:Version");
        Range(o.Model.WatchIntervalMs, 0, 86_400_000, "Model:WatchIntervalMs");
        if (!(o.Model.BatchLatencyBudgetMs is > 0 and <= 60_000))
            errors.Add($"Model:BatchLatencyBudgetMs must be above 0 and at most 60000 (was {o.Model.BatchLatencyBudgetMs}).");
        if (!string.IsNullOrWhiteSpace(o.Model.Repository) && !Directory.Exists(resolvePath(o.Model.Repository)))
            errors.Add($"Model:Repository: directory '{o.Model.Repository}' does not exist.");
        if (!string.IsNullOrWhiteSpace(o.Model.Repository))
        {
            try
            {
                var deployment = o.Model.LoadDeployment(resolvePath);
                if (o.Model.OnError == ModelErrorPolicy.Fallback && deployment?.Spec.Fallback is null)
                    errors.Add("Model:OnError=Fallback needs Model:Deployment with a fallback model (the tier that serves what the champion fails to score).");
            }
            catch (StreamInference.Core.Deployment.DeploymentException e)
            {
                errors.Add($"Model:Deployment: {e.Message}");
            }
        }
        var shadowTopic = o.Kafka.EffectiveShadowTopic();
        if (shadowTopic == o.Kafka.OutputTopic || shadowTopic == o.Kafka.InputTopic || shadowTopic == o.Kafka.DeadLetterTopic || shadowTopic == o.Drift.Topic)
            errors.Add("Kafka:ShadowTopic must differ from Kafka:OutputTopic, Kafka:InputTopic, Kafka:DeadLetterTopic and Drift:Topic: the champion's consumers must never read shadow predictions.");
        var comparisonTopic = o.Kafka.EffectiveComparisonTopic();
        if (comparisonTopic == o.Kafka.OutputTopic || comparisonTopic == o.Kafka.InputTopic || comparisonTopic == o.Kafka.DeadLetterTopic || comparisonTopic == o.Drift.Topic || comparisonTopic == shadowTopic)
            errors.Add("Kafka:ComparisonTopic must differ from the input, output, dead-letter, drift and shadow topics.");
        Range(o.Model.ComparisonWindowEvents, 10, 10_000_000, "Model:ComparisonWindowEvents");
        if (!double.IsFinite(o.Model.DecisionThreshold)) errors.Add("Model:DecisionThreshold must be a finite number.");
        FileExists(o.Features.Definition, "Features:Definition");
        FileExists(o.Features.ReaderSchema, "Features:ReaderSchema");
        Range(o.Features.MaxMessageBytes, 16, 64 << 20, "Features:MaxMessageBytes");
        Range(o.Pipeline.MaxBatchSize, 1, 65_536, "Pipeline:MaxBatchSize");
        Range(o.Pipeline.MaxBatchDelayMs, 0, 60_000, "Pipeline:MaxBatchDelayMs");
        Range(o.Pipeline.InputQueueCapacity, 1, 10_000_000, "Pipeline:InputQueueCapacity");
        Range(o.Pipeline.MaxInFlightBatches, 2, 1024, "Pipeline:MaxInFlightBatches");
        Range(o.Pipeline.ShutdownTimeoutMs, 0, 600_000, "Pipeline:ShutdownTimeoutMs");
        Range(o.Http.Port, 0, 65_535, "Http:Port");
        if (o.Drift.Enabled)
        {
            Require(o.Drift.Topic, "Drift:Topic");
            if (o.Drift.Topic == o.Kafka.InputTopic) errors.Add("Drift:Topic must differ from Kafka:InputTopic.");
            if (o.Drift.WindowSeconds <= 0) Range(o.Drift.WindowEvents, 10, 100_000_000, "Drift:WindowEvents");
            if (o.Drift.WindowSeconds < 0 || o.Drift.WindowSeconds > 86_400) errors.Add($"Drift:WindowSeconds must be between 0 and 86400 (was {o.Drift.WindowSeconds}).");
            if (o.Drift.Alpha is <= 0 or >= 0.5) errors.Add($"Drift:Alpha must be in (0, 0.5) (was {o.Drift.Alpha}).");
            if (o.Drift.PsiWarn > o.Drift.PsiAlert || o.Drift.JsWarn > o.Drift.JsAlert || o.Drift.MissingRateWarn > o.Drift.MissingRateAlert)
                errors.Add("Drift: each *Warn threshold must not exceed its *Alert threshold.");
            if (!(o.Drift.PsiNegligible >= 0 && o.Drift.PsiNegligible <= o.Drift.PsiWarn))
                errors.Add($"Drift:PsiNegligible must be between 0 and Drift:PsiWarn (was {o.Drift.PsiNegligible}).");
            if (!(o.Drift.HourSmoothingRows >= 0 && o.Drift.HourSmoothingRows <= 1e9))
                errors.Add($"Drift:HourSmoothingRows must be 0 or more (was {o.Drift.HourSmoothingRows}).");
            if (o.Drift.Profile is { Length: > 0 } profile && !File.Exists(resolvePath(profile)))
                errors.Add($"Drift:Profile: file '{profile}' does not exist.");
        }
        return errors;
    }
}

/// <summary>Turns REDIS_URL (redis://[user:password@]host:port[/db], rediss:// for TLS) into a StackExchange.Redis configuration string.</summary>
public static class RedisUrl
{
    public static string ToConfiguration(string value)
    {
        if (!value.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) && !value.StartsWith("rediss://", StringComparison.OrdinalIgnoreCase))
            return value;
        var uri = new Uri(value);
        var parts = new List<string> { $"{uri.Host}:{(uri.Port > 0 ? uri.Port : 6379)}" };
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            var info = Uri.UnescapeDataString(uri.UserInfo);
            var colon = info.IndexOf(':');
            var user = colon >= 0 ? info[..colon] : "";
            var password = colon >= 0 ? info[(colon + 1)..] : info;
            if (user.Length > 0) parts.Add($"user={user}");
            if (password.Length > 0) parts.Add($"password={password}");
        }
        if (uri.Scheme.Equals("rediss", StringComparison.OrdinalIgnoreCase)) parts.Add("ssl=true");
        var db = uri.AbsolutePath.Trim('/');
        if (db.Length > 0) parts.Add($"defaultDatabase={db}");
        return string.Join(',', parts);
    }
}
