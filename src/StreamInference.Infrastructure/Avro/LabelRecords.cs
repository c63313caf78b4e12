using Avro.Generic;
using Avro.IO;
using StreamInference.Core.Evaluation;
using AvroSchema = Avro.Schema;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// Ground-truth labels on the labels topic (<c>schemas/label.avsc</c>, embedded), in the Confluent wire format. Labels
/// are few next to events (one per event, days later), so the generic Avro reader and writer do.
/// </summary>
public sealed class LabelRecords(int schemaId)
{
    public static AvroSchema Schema { get; } = Load();

    private static AvroSchema Load()
    {
        using var stream = typeof(LabelRecords).Assembly.GetManifestResourceStream("label.avsc")
                           ?? throw new InvalidOperationException("Embedded label.avsc is missing.");
        using var reader = new StreamReader(stream);
        return AvroSchema.Parse(reader.ReadToEnd());
    }

    private readonly GenericDatumWriter<GenericRecord> _writer = new(Schema);

    public int SchemaId { get; } = schemaId;

    public byte[] Encode(GroundTruth label)
    {
        var record = new GenericRecord((global::Avro.RecordSchema)Schema);
        record.Add("event_id", label.EventId);
        record.Add("entity_key", label.EntityKey);
        record.Add("label", label.Label);
        record.Add("label_time", DateTimeOffset.FromUnixTimeMilliseconds(label.LabelTimeMs).UtcDateTime);
        record.Add("event_time", label.EventTimeMs is { } t ? DateTimeOffset.FromUnixTimeMilliseconds(t).UtcDateTime : null);
        using var buffer = new MemoryStream();
        Span<byte> header = stackalloc byte[ConfluentWireFormat.HeaderSize];
        ConfluentWireFormat.WriteHeader(header, SchemaId);
        buffer.Write(header);
        _writer.Write(record, new BinaryEncoder(buffer));
        return buffer.ToArray();
    }

    /// <summary>A label record read with the schema it was written with (<paramref name="writer"/>, from the registry by its id).</summary>
    public static GroundTruth Decode(ReadOnlySpan<byte> framed, AvroSchema writer)
    {
        var reader = new GenericDatumReader<GenericRecord>(writer, Schema);
        using var input = new MemoryStream(framed[ConfluentWireFormat.HeaderSize..].ToArray(), writable: false);
        var r = reader.Read(null!, new BinaryDecoder(input));
        static long Millis(object value) => value is DateTime d ? new DateTimeOffset(DateTime.SpecifyKind(d, DateTimeKind.Utc)).ToUnixTimeMilliseconds() : (long)value;
        return new GroundTruth((string)r["event_id"], (string)r["entity_key"], (bool)r["label"], Millis(r["label_time"]),
            r["event_time"] is { } eventTime ? Millis(eventTime) : null);
    }
}
