using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Avro;

/// <summary>
/// Writes prediction records in Avro binary, framed for the registry. The layout is fixed by
/// <c>schemas/prediction.avsc</c> (embedded in this assembly), so it is written field by field with
/// no reflection and no intermediate record object; a test decodes the output with Apache.Avro.
/// Single-threaded: the score stage owns one instance.
/// </summary>
public sealed class PredictionWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(512);
    private readonly byte[] _modelName;
    private readonly byte[] _modelVersion;
    private readonly int _primaryIndex;

    public PredictionWriter(int schemaId, string modelName, string modelVersion, int primaryScoreIndex)
    {
        SchemaId = schemaId;
        _modelName = Encoding.UTF8.GetBytes(modelName);
        _modelVersion = Encoding.UTF8.GetBytes(modelVersion);
        _primaryIndex = primaryScoreIndex;
    }

    public int SchemaId { get; }

    public static global::Avro.Schema Schema { get; } = LoadSchema();

    private static global::Avro.Schema LoadSchema()
    {
        using var stream = typeof(PredictionWriter).Assembly.GetManifestResourceStream("prediction.avsc")
                           ?? throw new InvalidOperationException("Embedded prediction.avsc is missing.");
        using var reader = new StreamReader(stream);
        return global::Avro.Schema.Parse(reader.ReadToEnd());
    }

    /// <summary>Encodes the prediction for clean row <paramref name="k"/> (record row <paramref name="row"/>).</summary>
    /// <summary>Value of the <c>degraded</c> field when the feature store could not be reached.</summary>
    public const string DegradedFeatureStore = "feature-store-unavailable";
    private static readonly byte[] FeatureStoreUnavailable = System.Text.Encoding.UTF8.GetBytes(DegradedFeatureStore);

    public byte[] Write(EventBatch batch, int row, int k)
    {
        _buffer.ResetWrittenCount();
        var header = _buffer.GetSpan(ConfluentWireFormat.HeaderSize);
        ConfluentWireFormat.WriteHeader(header, SchemaId);
        _buffer.Advance(ConfluentWireFormat.HeaderSize);

        WriteString(batch.EventIds[row]!);
        WriteString(batch.EntityKeys[row]!);
        var model = batch.ScoredBy;
        WriteBytes(model?.NameUtf8 ?? _modelName);
        WriteBytes(model?.VersionUtf8 ?? _modelVersion);
        var scores = batch.ScoreRow(k);
        WriteDouble(scores[Math.Min(model?.PrimaryScoreIndex ?? _primaryIndex, scores.Length - 1)]);
        WriteLong(scores.Length);
        foreach (var s in scores) WriteDouble(s);
        WriteLong(0); // end of array blocks
        var label = batch.Labels[k];
        if (label is null)
        {
            WriteLong(0); // union branch 0: null
        }
        else
        {
            WriteLong(1);
            WriteString(label);
        }
        WriteLong(batch.DefaultedCounts[row]);
        WriteLong(batch.EventTimesMs[row]);
        WriteLong(batch.ScoredAtMs);
        ref readonly var r = ref batch.Records[row];
        WriteLong(r.Partition.Partition);
        WriteLong(r.Offset);
        if (batch.FeatureStoreUnavailable)
        {
            WriteLong(1);
            WriteBytes(FeatureStoreUnavailable);
        }
        else WriteLong(0);
        return _buffer.WrittenSpan.ToArray();
    }

    private void WriteLong(long value)
    {
        var span = _buffer.GetSpan(10);
        var n = (ulong)((value << 1) ^ (value >> 63));
        var i = 0;
        while (n >= 0x80)
        {
            span[i++] = (byte)(n | 0x80);
            n >>= 7;
        }
        span[i++] = (byte)n;
        _buffer.Advance(i);
    }

    private void WriteDouble(double value)
    {
        BinaryPrimitives.WriteDoubleLittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    private void WriteString(string value)
    {
        var max = Encoding.UTF8.GetMaxByteCount(value.Length);
        var length = Encoding.UTF8.GetByteCount(value);
        WriteLong(length);
        var written = Encoding.UTF8.GetBytes(value, _buffer.GetSpan(Math.Min(max, length)));
        _buffer.Advance(written);
    }

    private void WriteBytes(byte[] utf8)
    {
        WriteLong(utf8.Length);
        utf8.CopyTo(_buffer.GetSpan(utf8.Length));
        _buffer.Advance(utf8.Length);
    }
}
