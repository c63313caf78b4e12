using Avro;
using Avro.Generic;
using Avro.IO;
using StreamInference.Core.Drift;
using StreamInference.Infrastructure.Avro;

namespace StreamInference.Infrastructure.Drift;

/// <summary>Encodes <see cref="DriftReport"/>s as <c>schemas/drift-report.avsc</c> records in the Confluent wire format (once per window).</summary>
public sealed class DriftReportWriter(int schemaId)
{
    public static RecordSchema Schema { get; } = LoadSchema();
    private static readonly RecordSchema FeatureSchema = (RecordSchema)((ArraySchema)Schema["features"].Schema).ItemSchema;
    private static readonly EnumSchema SeveritySchema = (EnumSchema)Schema["max_severity"].Schema;
    private readonly GenericDatumWriter<GenericRecord> _writer = new(Schema);

    /// <summary>Set when the drift topic's subject has another (evolved) schema: reports are re-encoded into it.</summary>
    public SchemaTranscoder? Transcoder { get; init; }

    private static RecordSchema LoadSchema() => (RecordSchema)EmbeddedResources.AvroSchema("drift-report.avsc");

    public byte[] Encode(DriftReport report)
    {
        var record = new GenericRecord(Schema);
        record.Add("model_name", report.Model);
        record.Add("model_version", report.ModelVersion);
        record.Add("feature_set", report.FeatureSet);
        record.Add("feature_set_version", report.FeatureSetVersion);
        record.Add("window_start", DateTimeOffset.FromUnixTimeMilliseconds(report.WindowStartMs).UtcDateTime);
        record.Add("window_end", DateTimeOffset.FromUnixTimeMilliseconds(report.WindowEndMs).UtcDateTime);
        record.Add("events", report.Events);
        record.Add("max_severity", Severity(report.MaxSeverity));
        record.Add("features", report.Features.Select(Feature).ToArray());
        record.Add("prediction", Feature(report.Prediction));
        var framed = ConfluentWireFormat.Frame(_writer, record, schemaId);
        return Transcoder is null ? framed : Transcoder.Transcode(framed, schemaId);
    }

    private static GenericEnum Severity(DriftSeverity s) => new(SeveritySchema, s.ToString().ToUpperInvariant());

    private static GenericRecord Feature(FeatureDrift f)
    {
        static object? Opt(double v) => double.IsFinite(v) ? v : null;
        var r = new GenericRecord(FeatureSchema);
        r.Add("name", f.Name);
        r.Add("kind", f.Kind);
        r.Add("count", f.Count);
        r.Add("missing_rate", f.MissingRate);
        r.Add("reference_missing_rate", f.ReferenceMissingRate);
        r.Add("psi", Opt(f.Psi));
        r.Add("ks", Opt(f.Ks));
        r.Add("ks_p_value", Opt(f.KsPValue));
        r.Add("js_distance", Opt(f.JsDistance));
        r.Add("chi_squared", Opt(f.ChiSquared));
        r.Add("chi_squared_p_value", Opt(f.ChiSquaredPValue));
        r.Add("severity", Severity(f.Severity));
        r.Add("breaches", f.Breaches.ToArray());
        return r;
    }
}
