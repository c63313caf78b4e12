using Avro;
using Avro.Generic;
using Avro.IO;
using BenchmarkDotNet.Attributes;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;

namespace StreamInference.Benchmarks;

/// <summary>
/// <see cref="AvroEventDecoder.DecodeAsync"/> over a batch of 256 Confluent-framed payment events (writer
/// schema already cached, as in steady state), against a baseline that only runs Apache.Avro's generic
/// reader over the same bytes (the library's floor, without the copy into the batch's slots) and against
/// Confluent's official <see cref="AvroDeserializer{T}"/> of <see cref="GenericRecord"/> on the same bytes
/// (only deserializing: reading the fields out would come on top). Results are per event.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("decode")]
public class EventDecodeBenchmarks
{
    private const int Events = 256;
    private EventBatch _batch = null!;
    private AvroEventDecoder _decoder = null!;
    private DatumReader<GenericRecord> _reader = null!;
    private GenericRecord? _reuse;
    private AvroDeserializer<GenericRecord> _official = null!;
    private readonly SerializationContext _context = new(MessageComponentType.Value, "payments");

    [GlobalSetup]
    public void Setup()
    {
        _official = new AvroDeserializer<GenericRecord>(BenchmarkEnvironment.Registry.Client,
            new AvroDeserializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic });
        var plan = BenchmarkEnvironment.LoadPlan();
        var payloads = BenchmarkEnvironment.EncodePayments(Events, BenchmarkEnvironment.EventTime);
        _batch = BenchmarkEnvironment.DecodeBatches(plan, payloads, Events)[0];
        _decoder = BenchmarkEnvironment.CreateDecoder(plan);
        _decoder.DecodeAsync(_batch, CancellationToken.None).AsTask().GetAwaiter().GetResult(); // resolves and caches the schema
        var schema = BenchmarkEnvironment.LoadPaymentSchema();
        _reader = new GenericDatumReader<GenericRecord>(schema, schema);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Events)]
    public object? ApacheAvroReadOnly()
    {
        for (var row = 0; row < Events; row++)
        {
            var value = _batch.Records[row].Value!;
            using var stream = new MemoryStream(value, ConfluentWireFormat.HeaderSize, value.Length - ConfluentWireFormat.HeaderSize, writable: false);
            _reuse = _reader.Read(_reuse!, new BinaryDecoder(stream));
        }
        return _reuse;
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public int DecodeAsync()
    {
        var decode = _decoder.DecodeAsync(_batch, CancellationToken.None);
        if (!decode.IsCompletedSuccessfully) decode.AsTask().GetAwaiter().GetResult();
        return _batch.Count;
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public object? ConfluentAvroDeserializer()
    {
        GenericRecord? last = null;
        for (var row = 0; row < Events; row++)
            last = _official.DeserializeAsync(_batch.Records[row].Value, isNull: false, _context).GetAwaiter().GetResult();
        return last;
    }
}

/// <summary>
/// <see cref="PredictionWriter.Write"/> per scored row (the bytes handed to the producer), against a
/// baseline that only copies an already-encoded prediction into a new array — the floor, since the Kafka
/// client takes one byte[] per message — Apache.Avro's generic writer for the same record, and Confluent's
/// official <see cref="AvroSerializer{T}"/> of <see cref="GenericRecord"/> (building the record included, as a
/// caller of it must). Results are per event.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("encode")]
public class PredictionEncodeBenchmarks
{
    private const int Events = 256;
    private EventBatch _batch = null!;
    private PredictionWriter _writer = null!;
    private byte[] _encoded = [];
    private GenericDatumWriter<GenericRecord> _generic = null!;
    private RecordSchema _schema = null!;
    private readonly MemoryStream _stream = new();
    private AvroSerializer<GenericRecord> _official = null!;
    private readonly SerializationContext _context = new(MessageComponentType.Value, "predictions");

    [GlobalSetup]
    public void Setup()
    {
        _official = new AvroSerializer<GenericRecord>(BenchmarkEnvironment.Registry.Client,
            new AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic });
        var plan = BenchmarkEnvironment.LoadPlan();
        var payloads = BenchmarkEnvironment.EncodePayments(Events, BenchmarkEnvironment.EventTime);
        _batch = BenchmarkEnvironment.DecodeBatches(plan, payloads, Events)[0];
        var random = new Random(5);
        for (var k = 0; k < Events; k++) _batch.Scores[k] = random.NextDouble();
        _batch.ScoredAtMs = BenchmarkEnvironment.EventTime.ToUnixTimeMilliseconds();
        _writer = new PredictionWriter(2, "fraud-logreg", "2", primaryScoreIndex: 0);
        _encoded = _writer.Write(_batch, 0, 0);
        _schema = (RecordSchema)PredictionWriter.Schema;
        _generic = new GenericDatumWriter<GenericRecord>(_schema);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Events)]
    public int CopyEncodedOnly()
    {
        var total = 0;
        for (var k = 0; k < Events; k++) total += _encoded.AsSpan().ToArray().Length;
        return total;
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public int PredictionWriterWrite()
    {
        var b = _batch;
        var total = 0;
        for (var k = 0; k < b.OkCount; k++) total += _writer.Write(b, b.Rows[k], k).Length;
        return total;
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public int ApacheAvroGenericWriter()
    {
        var b = _batch;
        var total = 0;
        Span<byte> header = stackalloc byte[ConfluentWireFormat.HeaderSize];
        ConfluentWireFormat.WriteHeader(header, 2);
        for (var k = 0; k < b.OkCount; k++)
        {
            var record = Record(b, k);
            _stream.SetLength(0);
            _stream.Write(header);
            _generic.Write(record, new BinaryEncoder(_stream));
            total += _stream.ToArray().Length;
        }
        return total;
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public int ConfluentAvroSerializer()
    {
        var b = _batch;
        var total = 0;
        for (var k = 0; k < b.OkCount; k++)
            total += _official.SerializeAsync(Record(b, k), _context).GetAwaiter().GetResult().Length;
        return total;
    }

    /// <summary>The prediction of clean row <paramref name="k"/> as a generic record (what the generic writers need).</summary>
    private GenericRecord Record(EventBatch b, int k)
    {
        var row = b.Rows[k];
        var record = new GenericRecord(_schema);
        record.Add("event_id", b.EventIds[row]);
        record.Add("entity_key", b.EntityKeys[row]);
        record.Add("model_name", "fraud-logreg");
        record.Add("model_version", "2");
        record.Add("score", b.Scores[k]);
        record.Add("scores", new object[] { b.Scores[k] });
        record.Add("label", null);
        record.Add("features_defaulted", b.DefaultedCounts[row]);
        record.Add("event_time", DateTimeOffset.FromUnixTimeMilliseconds(b.EventTimesMs[row]).UtcDateTime);
        record.Add("scored_at", DateTimeOffset.FromUnixTimeMilliseconds(b.ScoredAtMs).UtcDateTime);
        record.Add("source_partition", b.Records[row].Partition.Partition);
        record.Add("source_offset", b.Records[row].Offset);
        record.Add("degraded", null);
        return record;
    }
}
