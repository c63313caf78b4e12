using Avro.Generic;
using Prometheus;
using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Evaluation;

/// <summary>A closed evaluation window with what the report adds to the metrics: the AUC's interval and the model's training AUC.</summary>
public sealed record EvaluatedWindow(EvaluationReport Report, AucInterval Interval, double? ReferenceAuc, DateTimeOffset ReportedAt);

/// <summary>
/// What the live evaluation reports: Prometheus series per model, arm and window kind (the last closed window's
/// figures), counters of the join's outcomes, and the Avro <c>EvaluationReport</c> (schemas/evaluation-report.avsc).
/// </summary>
public sealed class EvaluationTelemetry
{
    public static AvroSchema Schema { get; } = EmbeddedResources.AvroSchema("evaluation-report.avsc");

    private readonly Gauge _window;
    private readonly Gauge _reference;
    private readonly Counter _labels;
    private readonly Counter _predictions;
    private readonly Counter _labelled;
    private readonly Counter _records;
    private readonly Counter _reports;
    private readonly Gauge _clock;
    private readonly GenericDatumWriter<GenericRecord> _writer = new(Schema);

    public EvaluationTelemetry(IMetricFactory factory)
    {
        _window = factory.CreateGauge("streaminference_evaluation",
            "Performance against ground truth of the last closed window, by model, arm, window kind (event_time, label_arrival) and statistic: " +
            "auc, auc_lower, auc_upper, precision, recall, log_loss, brier, calibration_error, positive_rate, label_coverage, labelled, predicted.",
            ["model", "arm", "window", "statistic"]);
        _reference = factory.CreateGauge("streaminference_model_reference_auc", "The model's test AUC from its manifest (training), for comparison with the live AUC.", ["model"]);
        _labels = factory.CreateCounter("streaminference_labels_total", "Labels read, by outcome: joined, early (waits for its predictions), late (after the horizon), duplicate; window_final: a labelled prediction whose window was already reported.", ["outcome"]);
        _predictions = factory.CreateCounter("streaminference_evaluation_predictions_total", "Predictions read, by outcome: taken (waits for its label), duplicate (redelivered), past_horizon; window_final: its window was already reported.", ["outcome"]);
        _labelled = factory.CreateCounter("streaminference_labelled_predictions_total", "Predictions joined with their label, by model and arm.", ["model", "arm"]);
        _records = factory.CreateCounter("streaminference_evaluation_records_total", "Records read by the evaluation, by topic kind (predictions, shadow, labels) and result (ok, malformed).", ["topic", "result"]);
        _reports = factory.CreateCounter("streaminference_evaluation_reports_total", "Evaluation reports, by window kind and result of publishing: delivered or failed.", ["window", "result"]);
        _clock = factory.CreateGauge("streaminference_evaluation_clock_seconds", "The join's clock: the latest prediction event time read (Unix seconds).");
        // Every series a dashboard or an alert reads exists from the start, at zero.
        foreach (var outcome in new[] { "joined", "early", "late", "duplicate", "window_final" }) _labels.WithLabels(outcome);
        foreach (var outcome in new[] { "taken", "duplicate", "past_horizon", "window_final" }) _predictions.WithLabels(outcome);
        foreach (var topic in new[] { "predictions", "shadow", "labels" })
            foreach (var result in new[] { "ok", "malformed" }) _records.WithLabels(topic, result);
        foreach (var window in new[] { "event_time", "label_arrival" })
            foreach (var result in new[] { "delivered", "failed" }) _reports.WithLabels(window, result);
    }

    public static string WindowLabel(EvaluationWindowKind kind) => kind == EvaluationWindowKind.EventTime ? "event_time" : "label_arrival";

    public void Label(string outcome) => _labels.WithLabels(outcome).Inc();
    public void Prediction(string outcome) => _predictions.WithLabels(outcome).Inc();
    public void Labelled(LabelledPrediction p) => _labelled.WithLabels(p.Prediction.Model, p.Prediction.Arm).Inc();
    public void Record(string topic, bool ok) => _records.WithLabels(topic, ok ? "ok" : "malformed").Inc();
    public void Clock(long clockMs) => _clock.Set(clockMs / 1000.0);
    public void Published(EvaluationWindowKind kind, bool delivered) => _reports.WithLabels(WindowLabel(kind), delivered ? "delivered" : "failed").Inc();

    /// <summary>Sets the window's gauges (NaN figures as NaN: Prometheus shows a gap, not a zero).</summary>
    public void Window(EvaluatedWindow w)
    {
        var r = w.Report;
        var m = r.Metrics;
        var window = WindowLabel(r.Kind);
        void Set(string statistic, double value) => _window.WithLabels(r.Model, r.Arm, window, statistic).Set(value);
        Set("auc", m.Auc);
        Set("auc_lower", w.Interval.Lower);
        Set("auc_upper", w.Interval.Upper);
        Set("precision", m.Precision);
        Set("recall", m.Recall);
        Set("log_loss", m.LogLoss);
        Set("brier", m.Brier);
        Set("calibration_error", m.CalibrationError);
        Set("positive_rate", m.PositiveRate);
        Set("label_coverage", r.LabelCoverage);
        Set("labelled", m.Count);
        Set("predicted", r.Predicted);
        if (w.ReferenceAuc is { } reference) _reference.WithLabels(r.Model).Set(reference);
    }

    /// <summary>The window as an Avro EvaluationReport, framed for the registry id <paramref name="schemaId"/>.</summary>
    public byte[] Encode(EvaluatedWindow w, int schemaId)
    {
        var r = w.Report;
        var m = r.Metrics;
        static object? Finite(double value) => double.IsFinite(value) ? value : null;
        static DateTime Time(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime;
        var schema = (global::Avro.RecordSchema)Schema;
        var record = new GenericRecord(schema);
        record.Add("model", r.Model);
        record.Add("arm", r.Arm);
        record.Add("kind", new GenericEnum((global::Avro.EnumSchema)schema["kind"].Schema, r.Kind == EvaluationWindowKind.EventTime ? "EVENT_TIME" : "LABEL_ARRIVAL"));
        record.Add("sequence", r.Kind == EvaluationWindowKind.EventTime ? 0L : r.Sequence);
        record.Add("window_start", Time(r.StartMs));
        record.Add("window_end", Time(r.EndMs));
        record.Add("predicted", r.Predicted);
        record.Add("labelled", (long)m.Count);
        record.Add("positives", (long)m.Positives);
        record.Add("label_coverage", Finite(r.LabelCoverage));
        record.Add("positive_rate", Finite(m.PositiveRate));
        record.Add("mean_score", Finite(m.MeanScore));
        record.Add("auc", Finite(m.Auc));
        record.Add("auc_lower", Finite(w.Interval.Lower));
        record.Add("auc_upper", Finite(w.Interval.Upper));
        record.Add("reference_auc", w.ReferenceAuc);
        record.Add("threshold", m.Threshold);
        record.Add("precision", Finite(m.Precision));
        record.Add("recall", Finite(m.Recall));
        record.Add("log_loss", Finite(m.LogLoss));
        record.Add("brier", Finite(m.Brier));
        record.Add("calibration_error", Finite(m.CalibrationError));
        record.Add("reported_at", w.ReportedAt.UtcDateTime);
        return ConfluentWireFormat.Frame(_writer, record, schemaId);
    }
}
