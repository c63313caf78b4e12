using Avro.Generic;
using Avro.IO;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Prometheus;
using StreamInference.Core.Deployment;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Deployment;

/// <summary>
/// What a deployment reports: Prometheus series by model and arm (rows, scoring time, roles, tier, switches, champion
/// failures, comparison statistics) and one Avro <c>ComparisonReport</c> per closed comparison window on the
/// comparison topic (telemetry producer: best effort, never in a transaction).
/// </summary>
public sealed partial class DeploymentTelemetry : IDeploymentObserver
{
    private readonly Counter _rows;
    private readonly Histogram _seconds;
    private readonly Gauge _roles;
    private readonly Gauge _version;
    private readonly Gauge _tier;
    private readonly Counter _switches;
    private readonly Counter _championFailures;
    private readonly Gauge _comparison;
    private readonly Counter _reports;
    private readonly IProducer<byte[], byte[]>? _producer;
    private readonly string _topic;
    private readonly OutputSchema? _schema;
    private readonly GenericDatumWriter<GenericRecord>? _writer;
    private readonly SchemaTranscoder? _transcoder;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private readonly List<TierSwitch> _switchLog = [];

    public DeploymentTelemetry(IMetricFactory factory, IProducer<byte[], byte[]>? producer, string topic, OutputSchema? schema, ILogger log, TimeProvider? time = null)
    {
        _rows = factory.CreateCounter("streaminference_model_rows_total", "Rows scored, by model and arm (champion, canary, shadow, fallback).", ["model", "arm"]);
        _seconds = factory.CreateHistogram("streaminference_model_score_seconds", "Time a model took on one batch, by model and arm.", ["model", "arm"],
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16) });
        _roles = factory.CreateGauge("streaminference_deployment_role", "The role each model of the serving deployment plays (value 1).", ["model", "role"]);
        _version = factory.CreateGauge("streaminference_deployment_version", "Version of the deployment this processor serves.");
        _tier = factory.CreateGauge("streaminference_serving_tier", "Which tier serves: 0 the champion (with its canary), 1 the fallback model.");
        _switches = factory.CreateCounter("streaminference_tier_switches_total", "Switches of the serving tier, by the tier switched to.", ["to"]);
        _championFailures = factory.CreateCounter("streaminference_champion_failures_total", "Batches the champion failed to score that the fallback tier served (fallback onError).");
        _comparison = factory.CreateGauge("streaminference_comparison",
            "Live champion/challenger comparison of the last closed window: agreement, mean_difference, abs_difference_p50/p90/p99, rank_correlation, champion_us_per_row, challenger_us_per_row, events.",
            ["champion", "challenger", "arm", "statistic"]);
        _reports = factory.CreateCounter("streaminference_comparison_reports_total", "Comparison windows closed, by result of publishing the report: delivered or failed.", ["result"]);
        // Every series a dashboard or an alert reads exists from the start, at zero.
        foreach (var to in new[] { "fallback", "champion" }) _switches.WithLabels(to);
        foreach (var result in new[] { "delivered", "failed" }) _reports.WithLabels(result);
        _producer = producer;
        _topic = topic;
        _schema = schema;
        if (schema is not null)
        {
            _writer = new GenericDatumWriter<GenericRecord>(Schema);
            _transcoder = schema.CreateTranscoder();
        }
        _log = log;
        _time = time ?? TimeProvider.System;
    }

    public static AvroSchema Schema { get; } = LoadSchema();

    private static AvroSchema LoadSchema() => EmbeddedResources.AvroSchema("comparison-report.avsc");

    /// <summary>Raised on every closed comparison window, with the challenger's arm (on the score stage's thread).</summary>
    public event Action<ComparisonReport, ServingArm>? Compared;

    /// <summary>Raised on every switch of the serving tier (on the score stage's thread).</summary>
    public event Action<TierSwitch>? TierSwitched;

    /// <summary>Tier switches so far, oldest first.</summary>
    public IReadOnlyList<TierSwitch> Switches
    {
        get
        {
            lock (_gate) return [.. _switchLog];
        }
    }

    /// <summary>Rows the fallback tier served so far.</summary>
    public long FallbackRows => Interlocked.Read(ref _fallbackRows);
    private long _fallbackRows;

    public void OnScored(DeployedModel model, ServingArm arm, int rows, TimeSpan elapsed)
    {
        if (arm == ServingArm.Fallback) Interlocked.Add(ref _fallbackRows, rows);
        var labels = (model.Identity.ToString(), arm.Text());
        _rows.WithLabels(labels.Item1, labels.Item2).Inc(rows);
        _seconds.WithLabels(labels.Item1, labels.Item2).Observe(elapsed.TotalSeconds);
    }

    public void OnTierSwitched(ServingDeployment deployment, TierSwitch change)
    {
        lock (_gate) _switchLog.Add(change);
        _tier.Set(change.To == ServingTier.Fallback ? 1 : 0);
        _switches.WithLabels(change.To == ServingTier.Fallback ? "fallback" : "champion").Inc();
        TierSwitched?.Invoke(change);
    }

    public void OnChampionFailed(ServingDeployment deployment, Exception error) => _championFailures.Inc();

    public void OnDeploymentChanged(ServingDeployment? previous, ServingDeployment next)
    {
        foreach (var labels in _roles.GetAllLabelValues().ToList()) _roles.RemoveLabelled(labels);
        foreach (var (m, role) in next.Roles) _roles.WithLabels(m.Identity.ToString(), role.Text()).Set(1);
        _version.Set(next.Version);
        _tier.Set(next.Fallback?.Controller.Tier == ServingTier.Fallback ? 1 : 0);
    }

    public void OnComparison(ServingDeployment deployment, Challenger challenger, ComparisonReport report)
    {
        void Set(string statistic, double value) =>
            _comparison.WithLabels(report.Champion, report.Challenger, challenger.Arm.Text(), statistic).Set(value);
        Set("agreement", report.Agreement);
        Set("mean_difference", report.MeanDifference);
        Set("abs_difference_p50", report.AbsDifferenceP50);
        Set("abs_difference_p90", report.AbsDifferenceP90);
        Set("abs_difference_p99", report.AbsDifferenceP99);
        Set("rank_correlation", report.RankCorrelation);
        Set("champion_us_per_row", report.ChampionMicrosPerRow);
        Set("challenger_us_per_row", report.ChallengerMicrosPerRow);
        Set("events", report.Events);
        Log.Compared(_log, report.Challenger, challenger.Arm.Text(), report.Champion, report.Events, report.Agreement, report.AbsDifferenceP99, report.RankCorrelation);
        Compared?.Invoke(report, challenger.Arm);
        if (_producer is null || _schema is null) return;
        try
        {
            _producer.Produce(_topic, new Message<byte[], byte[]>
            {
                Key = System.Text.Encoding.UTF8.GetBytes($"{report.Champion}|{report.Challenger}"),
                Value = Encode(deployment.Version, challenger.Arm, report),
            }, r => _reports.WithLabels(r.Error.IsError ? "failed" : "delivered").Inc());
        }
        catch (Exception e) when (e is KafkaException or InvalidOperationException or ObjectDisposedException or global::Avro.AvroException)
        {
            _reports.WithLabels("failed").Inc();
            Log.PublishFailed(_log, _topic, e.Message);
        }
    }

    /// <summary>The report as a Confluent-framed Avro ComparisonReport.</summary>
    public byte[] Encode(long deploymentVersion, ServingArm arm, ComparisonReport report)
    {
        var record = new GenericRecord((global::Avro.RecordSchema)Schema);
        static object? Finite(double v) => double.IsFinite(v) ? v : null;
        var values = new Dictionary<string, object?>
        {
            ["deployment_version"] = deploymentVersion,
            ["champion"] = report.Champion,
            ["challenger"] = report.Challenger,
            ["arm"] = arm.Text(),
            ["sequence"] = report.Sequence,
            ["window_end"] = _time.GetUtcNow().UtcDateTime,
            ["events"] = report.Events,
            ["threshold"] = report.Threshold,
            ["agreement"] = report.Agreement,
            ["both_positive"] = report.BothPositive,
            ["champion_only"] = report.ChampionOnly,
            ["challenger_only"] = report.ChallengerOnly,
            ["both_negative"] = report.BothNegative,
            ["mean_difference"] = report.MeanDifference,
            ["abs_difference_p50"] = report.AbsDifferenceP50,
            ["abs_difference_p90"] = report.AbsDifferenceP90,
            ["abs_difference_p99"] = report.AbsDifferenceP99,
            ["rank_correlation"] = Finite(report.RankCorrelation),
            ["champion_us_per_row"] = Finite(report.ChampionMicrosPerRow),
            ["challenger_us_per_row"] = Finite(report.ChallengerMicrosPerRow),
        };
        foreach (var (name, value) in values) record.Add(name, value);
        var framed = ConfluentWireFormat.Frame(_writer!, record, _schema!.Id);
        // A subject's evolved schema (SchemaRegistry:UseLatestVersion) may hold more fields: they take their defaults.
        return _transcoder is null ? framed : _transcoder.Transcode(framed, _schema.Id);
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Comparison {Challenger} ({Arm}) vs {Champion} over {Events} events: agreement {Agreement:P2}, |Δ| p99 {P99:0.####}, Spearman {Rho:0.###}")]
        public static partial void Compared(ILogger logger, string challenger, string arm, string champion, int events, double agreement, double p99, double rho);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Comparison report not delivered to {Topic}: {Reason}")]
        public static partial void PublishFailed(ILogger logger, string topic, string reason);
    }
}
