using System.Buffers.Binary;
using System.Text;

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
    string? Degraded);

/// <summary>
/// Reads what <see cref="PredictionWriter"/> writes, field by field in <c>schemas/prediction.avsc</c>'s
/// order, without the registry or Apache.Avro: for readers that know the records come from this
/// processor (the benchmark's latency reader) and tests.
/// </summary>
public static class PredictionReader
{
    /// <summary>Decodes a whole prediction (registry framing included); the value must hold nothing after it.</summary>
    public static PredictionRecord Read(ReadOnlySpan<byte> value)
    {
        if (ConfluentWireFormat.TryReadHeader(value, out var schemaId) is not WireHeaderStatus.Ok)
            throw new InvalidDataException("A prediction starts with the registry's 5-byte header.");
        var c = new Cursor(value, ConfluentWireFormat.HeaderSize);
        var prediction = new PredictionRecord(
            schemaId,
            EventId: c.String(),
            EntityKey: c.String(),
            ModelName: c.String(),
            ModelVersion: c.String(),
            Score: c.Double(),
            Scores: c.Doubles(),
            Label: c.OptionalString(),
            FeaturesDefaulted: checked((int)c.Long()),
            EventTimeMs: c.Long(),
            ScoredAtMs: c.Long(),
            SourcePartition: checked((int)c.Long()),
            SourceOffset: c.Long(),
            Degraded: c.OptionalString());
        if (!c.AtEnd) throw new InvalidDataException($"{value.Length - c.Position} bytes after the prediction's last field.");
        return prediction;
    }

    /// <summary>
    /// Only the prediction's <c>event_time</c> (Unix milliseconds), found by skipping the fields before it
    /// without decoding them: cheap enough for a reader that shares the cores with what it measures.
    /// </summary>
    public static long ReadEventTimeMs(ReadOnlySpan<byte> value)
    {
        var c = new Cursor(value, ConfluentWireFormat.HeaderSize);
        for (var i = 0; i < 4; i++) c.SkipString();     // event_id, entity_key, model_name, model_version
        c.Skip(8);                                      // score
        c.SkipDoubles();                                // scores
        c.SkipOptionalString();                         // label
        c.Long();                                       // features_defaulted
        return c.Long();                                // event_time
    }

    /// <summary>Avro binary, the subset the prediction uses: zig-zag varints, doubles, strings, double arrays, ["null", "string"].</summary>
    private ref struct Cursor(ReadOnlySpan<byte> buffer, int position)
    {
        private readonly ReadOnlySpan<byte> _buffer = buffer;

        public int Position { get; private set; } = position;
        public readonly bool AtEnd => Position == _buffer.Length;

        public long Long()
        {
            ulong n = 0;
            var shift = 0;
            byte b;
            do
            {
                if (shift > 63) throw new InvalidDataException("A varint longer than 10 bytes.");
                b = _buffer[Position++];
                n |= (ulong)(b & 0x7f) << shift;
                shift += 7;
            }
            while ((b & 0x80) != 0);
            return (long)(n >> 1) ^ -(long)(n & 1);
        }

        public double Double()
        {
            var d = BinaryPrimitives.ReadDoubleLittleEndian(_buffer.Slice(Position, 8));
            Position += 8;
            return d;
        }

        public string String() => Encoding.UTF8.GetString(Take(Length()));

        public string? OptionalString() => Branch() ? String() : null;

        public double[] Doubles()
        {
            var values = new List<double>();
            for (var n = BlockCount(); n > 0; n = BlockCount())
            {
                for (var i = 0; i < n; i++) values.Add(Double());
            }
            return [.. values];
        }

        public void Skip(int bytes) => Take(bytes);

        public void SkipString() => Skip(Length());

        public void SkipOptionalString()
        {
            if (Branch()) SkipString();
        }

        public void SkipDoubles()
        {
            for (var n = BlockCount(); n > 0; n = BlockCount()) Skip(checked(8 * n));
        }

        private int Length()
        {
            var n = Long();
            return n is >= 0 and <= int.MaxValue ? (int)n : throw new InvalidDataException($"Length {n} out of range.");
        }

        /// <summary>Union ["null", X]: false for null, true for X.</summary>
        private bool Branch() => Long() switch
        {
            0 => false,
            1 => true,
            var other => throw new InvalidDataException($"Union branch {other} of [\"null\", \"string\"]."),
        };

        /// <summary>The item count of the next array block (0 at the end); a negative count is followed by the block's size in bytes.</summary>
        private int BlockCount()
        {
            var n = Long();
            if (n >= 0) return checked((int)n);
            Long();
            return checked((int)-n);
        }

        private ReadOnlySpan<byte> Take(int bytes)
        {
            var span = _buffer.Slice(Position, bytes);
            Position += bytes;
            return span;
        }
    }
}
