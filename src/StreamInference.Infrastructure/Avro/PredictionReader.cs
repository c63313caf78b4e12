using Avro.Generic;
using Avro.IO;

namespace StreamInference.Infrastructure.Avro;

/// <summary>One prediction record as <see cref="PredictionWriter"/> writes it (<c>schemas/prediction.avsc</c>).</summary>
public sealed record PredictionRecord(
    int SchemaId,
    string EventId,
    string EntityKey,
    string ModelName,
    string ModelVersion,
    double Score,
    double[] Scores,
    string? Label,
    int FeaturesDefaulted,
    long EventTimeMs,
    long ScoredAtMs,
    int SourcePartition,
    long SourceOffset,
    string? Degraded,
    string Arm = "champion",
    long? DeploymentVersion = null)
{
    /// <summary>name@version: how deployments, drift and the evaluation name a model.</summary>
    public string Model => $"{ModelName}@{ModelVersion}";
}

/// <summary>
/// Reads what <see cref="PredictionWriter"/> writes (<c>schemas/prediction.avsc</c>), without the registry: for
/// readers that know the records come from this processor (the benchmark's latency reader) and tests.
/// </summary>
public static class PredictionReader
{
    private static readonly GenericDatumReader<GenericRecord> Reader = new(PredictionWriter.Schema, PredictionWriter.Schema);

    /// <summary>Decodes a whole prediction (registry framing included) with Apache.Avro; the value must hold nothing after it.</summary>
    public static PredictionRecord Read(byte[] value) => Read(value, Reader);

    /// <summary>
    /// A prediction written with <paramref name="writer"/> (the schema its id names in the registry), read as the current
    /// prediction schema: a record of an older schema gets the defaults of the fields it lacks (arm "champion").
    /// </summary>
    public static PredictionRecord Read(byte[] value, global::Avro.Schema writer) =>
        Read(value, ReferenceEquals(writer, PredictionWriter.Schema) ? Reader : new GenericDatumReader<GenericRecord>(writer, PredictionWriter.Schema));

    private static PredictionRecord Read(byte[] value, GenericDatumReader<GenericRecord> reader)
    {
        if (ConfluentWireFormat.TryReadHeader(value, out var schemaId) is not WireHeaderStatus.Ok)
            throw new InvalidDataException("A prediction starts with the registry's 5-byte header.");
        using var stream = new MemoryStream(value, ConfluentWireFormat.HeaderSize, value.Length - ConfluentWireFormat.HeaderSize, writable: false);
        var r = reader.Read(null!, new BinaryDecoder(stream));
        if (stream.Position != stream.Length) throw new InvalidDataException($"{stream.Length - stream.Position} bytes after the prediction's last field.");
        return new PredictionRecord(schemaId,
            EventId: (string)r["event_id"], EntityKey: (string)r["entity_key"], ModelName: (string)r["model_name"], ModelVersion: (string)r["model_version"],
            Score: (double)r["score"], Scores: [.. ((IEnumerable<object>)r["scores"]).Cast<double>()], Label: (string?)r["label"],
            FeaturesDefaulted: (int)r["features_defaulted"], EventTimeMs: UnixMs(r["event_time"]), ScoredAtMs: UnixMs(r["scored_at"]),
            SourcePartition: (int)r["source_partition"], SourceOffset: (long)r["source_offset"], Degraded: (string?)r["degraded"],
            Arm: r.TryGetValue("arm", out var arm) && arm is string a ? a : "champion",
            DeploymentVersion: r.TryGetValue("deployment_version", out var version) ? (long?)version : null);
    }

    private static long UnixMs(object value) => value is DateTime t ? new DateTimeOffset(t.ToUniversalTime()).ToUnixTimeMilliseconds() : (long)value;

    /// <summary>
    /// Only the prediction's <c>event_time</c> (Unix milliseconds), found by skipping the fields before it
    /// without decoding them: cheap enough for a reader that shares the cores with what it measures.
    /// </summary>
    public static long ReadEventTimeMs(ReadOnlySpan<byte> value)
    {
        var c = new Cursor(value, ConfluentWireFormat.HeaderSize);
        for (var i = 0; i < 4; i++) c.Skip(c.Length());    // event_id, entity_key, model_name, model_version
        c.Skip(8);                                          // score
        for (var n = c.BlockCount(); n > 0; n = c.BlockCount()) c.Skip(checked(8 * n));   // scores
        if (c.Long() == 1) c.Skip(c.Length());              // label: ["null", "string"]
        c.Long();                                           // features_defaulted
        return c.Long();                                    // event_time
    }

    /// <summary>Avro binary, what skipping to <c>event_time</c> needs: zig-zag varints, lengths, array block counts.</summary>
    private ref struct Cursor(ReadOnlySpan<byte> buffer, int position)
    {
        private readonly ReadOnlySpan<byte> _buffer = buffer;
        private int _position = position;

        public long Long()
        {
            ulong n = 0;
            var shift = 0;
            byte b;
            do
            {
                if (shift > 63) throw new InvalidDataException("A varint longer than 10 bytes.");
                b = _buffer[_position++];
                n |= (ulong)(b & 0x7f) << shift;
                shift += 7;
            }
            while ((b & 0x80) != 0);
            return (long)(n >> 1) ^ -(long)(n & 1);
        }

        public int Length()
        {
            var n = Long();
            return n is >= 0 and <= int.MaxValue ? (int)n : throw new InvalidDataException($"Length {n} out of range.");
        }

        /// <summary>The item count of the next array block (0 at the end); a negative count is followed by the block's size in bytes.</summary>
        public int BlockCount()
        {
            var n = Long();
            if (n >= 0) return checked((int)n);
            Long();
            return checked((int)-n);
        }

        public void Skip(int bytes)
        {
            if (bytes > _buffer.Length - _position) throw new InvalidDataException("The prediction ends before event_time.");
            _position += bytes;
        }
    }
}
