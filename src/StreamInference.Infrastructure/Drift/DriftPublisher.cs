using StreamInference.Infrastructure.Metrics;
using System.Globalization;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Prometheus;
using StreamInference.Infrastructure.Avro;
using StreamInference.Core.Drift;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Drift;

/// <summary>
/// Feeds scored batches to the <see cref="DriftMonitor"/> (score stage, allocation-free) and, per closed
/// window, publishes the report to the drift topic (keyed by model), sets the Prometheus gauges
/// <c>streaminference_drift{model,role,feature,statistic}</c> and <c>streaminference_drift_severity{model,role,feature}</c>,
/// and logs every feature whose statistics crossed a threshold.
/// </summary>
public sealed partial class DriftPublisher : IPipelineObserver, IDisposable
{
    private readonly Lock _gate = new();
    private readonly Timer? _timer;
    private readonly DriftMonitor _monitor;
    private readonly int _scoreIndex;
    private readonly IProducer<byte[], byte[]>? _producer;
    private readonly string _topic;
    private readonly DriftReportWriter _writer;
    private readonly byte[] _key;
    private readonly string _model;
    private string _role = "champion";
    private readonly ILogger _log;
    private readonly Gauge _statistic;
    private readonly Gauge _severity;
    private readonly Counter _windows;
    private readonly Counter _publishFailures;

    public DriftPublisher(DriftMonitor monitor, int scoreIndex, IProducer<byte[], byte[]>? producer, string topic, OutputSchema schema,
        string modelKey, DriftMetrics metrics, ILogger log, double windowSeconds = 0)
    {
        _monitor = monitor;
        _scoreIndex = scoreIndex;
        _producer = producer;
        _topic = topic;
        _writer = new DriftReportWriter(schema.Id) { Transcoder = schema.CreateTranscoder() };
        _key = System.Text.Encoding.UTF8.GetBytes(modelKey);
        _model = modelKey;
        _log = log;
        (_statistic, _severity, _windows, _publishFailures) = metrics;
        monitor.WindowClosed += OnWindowClosed;
        // Time windows must close even when traffic stops; the lock (per batch, not per event) keeps
        // the timer and the score stage from touching the monitor at once.
        if (windowSeconds > 0) _timer = new Timer(_ => { lock (_gate) _monitor.CloseIfDue(); }, null, 1000, 1000);
    }

    public void Dispose() => _timer?.Dispose();

    /// <summary>The model left the deployment: its series go (it no longer reports), then its window timer.</summary>
    public void Retire()
    {
        _timer?.Dispose();
        foreach (var labels in _statistic.GetAllLabelValues().Where(l => l[0] == _model).ToList()) _statistic.RemoveLabelled(labels);
        foreach (var labels in _severity.GetAllLabelValues().Where(l => l[0] == _model).ToList()) _severity.RemoveLabelled(labels);
    }

    public string Model => _model;

    public DriftMonitor Monitor => _monitor;

    public void OnBatchScored(EventBatch batch, TimeSpan score)
    {
        lock (_gate) _monitor.Observe(batch, _scoreIndex);
    }

    /// <summary>Feeds the monitor rows of a batch that several models served (under the lock the window timer takes too).</summary>
    public void Observe<TState>(TState state, Action<DriftMonitor, TState> observe)
    {
        lock (_gate)
        {
            observe(_monitor, state);
            _monitor.CloseIfDue();
        }
    }

    /// <summary>
    /// The model's role in the deployment, a label of its series (set on a promote or rollback): the series of its
    /// previous role go, so a dashboard never shows one model's drift twice.
    /// </summary>
    public string Role
    {
        get => _role;
        set
        {
            if (value == _role) return;
            foreach (var labels in _statistic.GetAllLabelValues().Where(l => l[0] == _model && l[1] == _role).ToList()) _statistic.RemoveLabelled(labels);
            foreach (var labels in _severity.GetAllLabelValues().Where(l => l[0] == _model && l[1] == _role).ToList()) _severity.RemoveLabelled(labels);
            _role = value;
        }
    }
    public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich) { }
    public void OnBatchPublished(EventBatch batch, TimeSpan publish) { }
    public void OnBatchDelivered(EventBatch batch, long nowMs) { }
    public void OnRetry(string stage, Exception error) { }

    private void OnWindowClosed(DriftReport report)
    {
        // Runs on the score stage (or the window timer): reporting must never fail the pipeline.
        try
        {
            Report(report);
        }
        catch (Exception e)
        {
            _publishFailures.Inc();
            Log.ReportFailed(_log, e);
        }
    }

    private void Report(DriftReport report)
    {
        _windows.Inc();
        foreach (var f in report.Features.Append(report.Prediction))
        {
            Set(f.Name, "psi", f.Psi);
            Set(f.Name, "ks", f.Ks);
            Set(f.Name, "ks_p_value", f.KsPValue);
            Set(f.Name, "js_distance", f.JsDistance);
            Set(f.Name, "chi_squared", f.ChiSquared);
            Set(f.Name, "chi_squared_p_value", f.ChiSquaredPValue);
            Set(f.Name, "missing_rate", f.MissingRate);
            _severity.WithLabels(_model, _role, f.Name).Set((int)f.Severity);
            if (f.Severity != DriftSeverity.Ok)
                Log.Drift(_log, f.Severity.ToString().ToUpperInvariant(), _model, f.Name, report.Events, string.Join(", ", f.Breaches.Select(b => Describe(f, b))));
        }
        if (_producer is null) return;
        try
        {
            _producer.Produce(_topic, new Message<byte[], byte[]> { Key = _key, Value = _writer.Encode(report) }, r =>
            {
                if (r.Error.IsError) { _publishFailures.Inc(); Log.PublishFailed(_log, _topic, r.Error.Reason); }
            });
        }
        catch (ProduceException<byte[], byte[]> e)
        {
            _publishFailures.Inc();
            Log.PublishFailed(_log, _topic, e.Error.Reason);
        }
    }

    // NaN (no value this window) is exported as NaN, so an old value cannot linger.
    private void Set(string feature, string statistic, double value) => _statistic.WithLabels(_model, _role, feature, statistic).Set(value);

    private static string Describe(FeatureDrift f, string statistic) => statistic switch
    {
        "psi" => string.Create(CultureInfo.InvariantCulture, $"psi {f.Psi:0.###}"),
        "js" => string.Create(CultureInfo.InvariantCulture, $"js {f.JsDistance:0.###}"),
        "ks" => string.Create(CultureInfo.InvariantCulture, $"ks {f.Ks:0.###} (p {f.KsPValue:0.##E+0})"),
        "chi_squared" => string.Create(CultureInfo.InvariantCulture, $"chi2 {f.ChiSquared:0.#} (p {f.ChiSquaredPValue:0.##E+0})"),
        "missing_rate" => string.Create(CultureInfo.InvariantCulture, $"missing {f.MissingRate:P1} vs {f.ReferenceMissingRate:P1}"),
        _ => statistic,
    };

    private static partial class Log
    {
        [LoggerMessage(EventId = 40, Level = LogLevel.Warning, Message = "Drift {Severity} ({Model}): {Feature} over {Events} events: {Breaches}")]
        public static partial void Drift(ILogger logger, string severity, string model, string feature, long events, string breaches);

        [LoggerMessage(EventId = 42, Level = LogLevel.Error, Message = "Drift report could not be produced")]
        public static partial void ReportFailed(ILogger logger, Exception error);

        [LoggerMessage(EventId = 41, Level = LogLevel.Warning, Message = "Drift report not delivered to {Topic}: {Reason}")]
        public static partial void PublishFailed(ILogger logger, string topic, string reason);
    }
}
