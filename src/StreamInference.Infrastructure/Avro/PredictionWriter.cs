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

    /// <summary>
    /// Set when the output subject's schema is not the built-in one (SchemaRegistry:UseLatestVersion with an
    /// evolved prediction schema): each record is re-encoded into it. Null: the bytes below are the output.
    /// </summary>
    public SchemaTranscoder? Transcoder { get; init; }

    public static global::Avro.Schema Schema { get; } = LoadSchema();

    private static global::Avro.Schema LoadSchema() => EmbeddedResources.AvroSchema("prediction.avsc");

    /// <summary>Value of the <c>degraded</c> field when the feature store could not be reached.</summary>
    public const string DegradedFeatureStore = "feature-store-unavailable";
    private static readonly byte[] FeatureStoreUnavailable = System.Text.Encoding.UTF8.GetBytes(DegradedFeatureStore);

    /// <summary>Encodes the prediction for clean row <paramref name="k"/> (record row <paramref name="row"/>).</summary>
    public byte[] Write(EventBatch batch, int row, int k) => Write(batch, row, batch.ServedBy(k), batch.ScoreRow(k), batch.Labels[k], batch.Arms[k]);

    private static readonly byte[][] ArmBytes = [.. Enum.GetValues<ServingArm>().Select(a => Encoding.UTF8.GetBytes(a.Text()))];

    /// <summary>
    /// Encodes a prediction of record row <paramref name="row"/> by <paramref name="model"/> from its own scores and
    /// label (a shadow model scored beside the one that filled the batch).
    /// </summary>
    public byte[] Write(EventBatch batch, int row, ModelIdentity? model, ReadOnlySpan<double> scores, string? label, ServingArm arm)
    {
        _buffer.ResetWrittenCount();
        var header = _buffer.GetSpan(ConfluentWireFormat.HeaderSize);
        ConfluentWireFormat.WriteHeader(header, SchemaId);
        _buffer.Advance(ConfluentWireFormat.HeaderSize);

        WriteString(batch.EventIds[row]!);
        WriteString(batch.EntityKeys[row]!);
        WriteBytes(model?.NameUtf8 ?? _modelName);
        WriteBytes(model?.VersionUtf8 ?? _modelVersion);
        WriteDouble(scores[Math.Min(model?.PrimaryScoreIndex ?? _primaryIndex, scores.Length - 1)]);
        WriteLong(scores.Length);
        foreach (var s in scores) WriteDouble(s);
        WriteLong(0); // end of array blocks
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
        WriteBytes(ArmBytes[(int)arm]);
        if (batch.DeploymentVersion is { } version)
        {
            WriteLong(1);
            WriteLong(version);
        }
        else WriteLong(0);
        return Transcoder is null ? _buffer.WrittenSpan.ToArray() : Transcoder.Transcode(_buffer.WrittenSpan, SchemaId);
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

/// <summary>
/// Kafka:OutputKeyFormat: prediction keys (the entity key) as plain UTF-8 strings (String, the default, what
/// Kafka's StringDeserializer reads) or as Avro strings in the Confluent wire format (Avro, schema "string"
/// under the key subject, what an Avro key deserializer, Kafka Connect's AvroConverter or Python's
/// AvroConsumer read).
/// </summary>
public enum OutputKeyFormat
{
    String,
    Avro,
}

/// <summary>Encodes prediction keys in the configured <see cref="OutputKeyFormat"/>.</summary>
public sealed class PredictionKeyWriter
{
    /// <summary>The Avro schema of Avro keys: a plain string.</summary>
    public static global::Avro.Schema AvroSchema { get; } = global::Avro.Schema.Parse("\"string\"");

    private readonly int _schemaId;

    private PredictionKeyWriter(OutputKeyFormat format, int schemaId)
    {
        Format = format;
        _schemaId = schemaId;
    }

    public static PredictionKeyWriter Utf8 { get; } = new(OutputKeyFormat.String, 0);

    public static PredictionKeyWriter Avro(int schemaId) => new(OutputKeyFormat.Avro, schemaId);

    public OutputKeyFormat Format { get; }

    public byte[] Write(string key)
    {
        if (Format == OutputKeyFormat.String) return Encoding.UTF8.GetBytes(key);
        var length = Encoding.UTF8.GetByteCount(key);
        Span<byte> prefix = stackalloc byte[10];
        var n = 0;
        var zigzag = (ulong)(((long)length << 1) ^ ((long)length >> 63));
        while (zigzag >= 0x80)
        {
            prefix[n++] = (byte)(zigzag | 0x80);
            zigzag >>= 7;
        }
        prefix[n++] = (byte)zigzag;
        var bytes = new byte[ConfluentWireFormat.HeaderSize + n + length];
        ConfluentWireFormat.WriteHeader(bytes, _schemaId);
        prefix[..n].CopyTo(bytes.AsSpan(ConfluentWireFormat.HeaderSize));
        Encoding.UTF8.GetBytes(key, bytes.AsSpan(ConfluentWireFormat.HeaderSize + n));
        return bytes;
    }
}
