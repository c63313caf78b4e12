using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;
using StackExchange.Redis;
using StreamInference.Core.Drift;
using StreamInference.Core.Pipeline;
using StreamInference.Core.Supervision;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka.Commit;
using StreamInference.Infrastructure.Metrics;

namespace StreamInference.Infrastructure.Processing;

/// <summary>
/// One processor instance, as hosts and tests use it: <see cref="RunAsync"/> builds a
/// <see cref="ProcessorRuntime"/> and runs it once; <see cref="RunSupervisedAsync"/> puts a
/// <see cref="Supervisor"/> around that, which restarts it after failures its policy accepts.
/// </summary>
public sealed class StreamProcessor
{
    private readonly ProcessorOptions _options;
    private readonly ILogger _log;
    private RuntimeContext _context;
    private volatile ProcessorRuntime? _runtime;
    private volatile bool _reachedReady;

    /// <summary>Options validated here, once (throws <see cref="ConfigurationException"/> naming each setting to fix).</summary>
    public StreamProcessor(ProcessorOptions options, ILoggerFactory loggers, IMetricFactory metricFactory, Func<string, string>? resolvePath = null)
        : this(loggers, metricFactory, Validated(options, resolvePath ?? PathResolver.Resolve), resolvePath ?? PathResolver.Resolve)
    {
    }

    /// <summary>Options the host bound and validated once, at start (<c>ValidateOnStart</c>; the monitor's cache holds them).</summary>
    public StreamProcessor(IOptionsMonitor<ProcessorOptions> options, ILoggerFactory loggers, IMetricFactory metricFactory)
        : this(loggers, metricFactory, options.CurrentValue, PathResolver.Resolve)
    {
    }

    private StreamProcessor(ILoggerFactory loggers, IMetricFactory metricFactory, ProcessorOptions options, Func<string, string> resolvePath)
    {
        _options = options;
        _log = loggers.CreateLogger<StreamProcessor>();
        _context = new RuntimeContext(loggers, metricFactory, resolvePath);
    }

    private static ProcessorOptions Validated(ProcessorOptions options, Func<string, string> resolvePath)
    {
        var errors = ProcessorOptionsValidator.Validate(options, resolvePath);
        return errors.Count > 0 ? throw new ConfigurationException(errors) : options;
    }

    /// <summary>Set while a run's consumer runs.</summary>
    public bool IsReady => _runtime?.IsReady == true;

    /// <summary>Partitions currently assigned to this instance by the consumer group.</summary>
    public int AssignedPartitions => _runtime?.AssignedPartitions ?? 0;

    /// <summary>The current (or last) run's metrics, once it is built.</summary>
    public ProcessorMetrics? Metrics => _runtime?.Metrics;

    /// <summary>The drift monitor, when drift monitoring is on; available once a run has loaded the model.</summary>
    public DriftMonitor? Drift => _runtime?.Drift;

    /// <summary>The deployment being served (Model:Deployment), null without one.</summary>
    public StreamInference.Infrastructure.Deployment.DeploymentScorer? Deployment => _runtime?.Deployment;

    /// <summary>The deployment's telemetry (tier switches, comparisons), null without a deployment.</summary>
    public StreamInference.Infrastructure.Deployment.DeploymentTelemetry? DeploymentTelemetry => _runtime?.DeploymentTelemetry;

    /// <summary>Drift monitoring per model, null when drift monitoring is off.</summary>
    public StreamInference.Infrastructure.Drift.ModelDrift? ModelDrift => _runtime?.ModelDrift;

    /// <summary>An extra per-batch observer (live views, audits), called after the metrics; set before running.</summary>
    public IPipelineObserver? Observer { get => _context.Observer; init => _context = _context with { Observer = value }; }

    /// <summary>Exactly-once: what to do when a transactional call hangs past every timeout (default: log and end the process so the orchestrator restarts it).</summary>
    public Action<string>? OnWedged { get => _context.OnWedged; init => _context = _context with { OnWedged = value }; }

    /// <summary>Wraps the commit strategy: for the dev services' embedded cluster only.</summary>
    public Func<ICommitStrategy, ICommitStrategy>? DecorateCommit { get => _context.DecorateCommit; init => _context = _context with { DecorateCommit = value }; }

    /// <summary>
    /// Runs until stopped; failures the <see cref="RestartPolicy"/> accepts restart the processor from the
    /// committed offsets after a backoff instead of ending it (see <see cref="Supervisor"/>).
    /// </summary>
    public Task RunSupervisedAsync(CancellationToken stop)
    {
        var restarts = ProcessorMetrics.Restarts(_context.MetricFactory);
        var supervisor = new Supervisor(new RestartPolicy(TransientFailures.IsTransient))
        {
            Restarting = (e, wait) =>
            {
                restarts.Inc();
                RuntimeLog.Restarting(_log, Secrets.RedactText(e.Message), wait.TotalSeconds);
            },
        };
        return supervisor.RunAsync(RunAsync, () => _reachedReady, stop);
    }

    /// <summary>One run: build everything, consume until stopped, drain, commit, close.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        using var runtime = await ProcessorRuntime.BuildAsync(_options, _context, stop).ConfigureAwait(false);
        _runtime = runtime;
        _reachedReady = true;
        await runtime.RunAsync(stop).ConfigureAwait(false);
    }


}

/// <summary>Which failures are infrastructure that may come back: the transient half of the <see cref="RestartPolicy"/>.</summary>
public static class TransientFailures
{
    /// <summary>Kafka (not fatal), the registry unreachable or failing (5xx, 401/403, 429), Redis not answering.</summary>
    public static bool IsTransient(Exception e) => e switch
    {
        KafkaException k => !k.Error.IsFatal,
        Confluent.SchemaRegistry.SchemaRegistryException or HttpRequestException => StreamInference.Infrastructure.Avro.RegistryErrors.IsUnavailable(e),
        RedisConnectionException or RedisTimeoutException or TimeoutException => true,
        _ => false,
    };
}

/// <summary>Configuration that failed validation; the message lists each setting to fix.</summary>
public sealed class ConfigurationException(IReadOnlyList<string> errors)
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
