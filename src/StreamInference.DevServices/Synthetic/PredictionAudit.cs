using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Avro.Generic;
using Avro.IO;
using Confluent.Kafka;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;

namespace StreamInference.DevServices.Synthetic;

/// <summary>
/// The downstream reader of the demo: consumes the prediction and dead-letter topics, decodes each
/// prediction through the registry like any consumer would, and accounts every input record by its
/// source partition and offset, so "lost" and "duplicates" are counted, not assumed.
/// </summary>
public sealed class PredictionAudit : IDisposable
{
    private readonly IConsumer<byte[], byte[]> _consumer;
    private readonly IAvroSchemaRegistry _registry;
    private readonly ConcurrentDictionary<(int, long), string?> _predicted = new();
    private readonly ConcurrentDictionary<(int, long), string> _deadLettered = new();
    private readonly Dictionary<int, GenericDatumReader<GenericRecord>> _readers = [];
    private readonly ConcurrentDictionary<(int, long), string> _degraded = new();
    private readonly ConcurrentDictionary<(int, long), string> _versions = new();
    private readonly ConcurrentDictionary<TopicPartition, long> _positions = new();
    private readonly ConcurrentQueue<(int, long)> _duplicateKeys = new();
    private long _duplicates;
    private long _rereads;
    private long _undecodable;

    public PredictionAudit(string bootstrapServers, IAvroSchemaRegistry registry, string predictionTopic, string deadLetterTopic)
    {
        _registry = registry;
        _consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = "streaminference-demo-audit-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
            IsolationLevel = IsolationLevel.ReadCommitted,
        })
        // It commits nothing, so a rebalance of its own group would restart a partition from the
        // beginning and count every record again: resume from the positions it has read up to.
        .SetPartitionsAssignedHandler((_, list) => list.Select(tp =>
            _positions.TryGetValue(tp, out var next) ? new TopicPartitionOffset(tp, next) : new TopicPartitionOffset(tp, Offset.Beginning)))
        .Build();
        _consumer.Subscribe([predictionTopic, deadLetterTopic]);
        DeadLetterTopic = deadLetterTopic;
    }

    public string DeadLetterTopic { get; }
    public int Predicted => _predicted.Count;
    public int DeadLettered => _deadLettered.Count;
    public long Duplicates => Interlocked.Read(ref _duplicates);
    /// <summary>Output records this reader was handed again at offsets it had already read (not counted as duplicates).</summary>
    public long Rereads => Interlocked.Read(ref _rereads);
    /// <summary>The source partition and offset of each duplicate prediction seen (the first 100,000).</summary>
    public IReadOnlyCollection<(int Partition, long Offset)> DuplicateKeys => _duplicateKeys;
    public long Undecodable => Interlocked.Read(ref _undecodable);
    public IReadOnlyDictionary<(int Partition, long Offset), string?> Predictions => _predicted;
    public IReadOnlyDictionary<(int Partition, long Offset), string> DeadLetters => _deadLettered;
    /// <summary>Predictions whose <c>degraded</c> field is set, by source partition and offset, with its value.</summary>
    public IReadOnlyDictionary<(int Partition, long Offset), string> Degraded => _degraded;
    /// <summary>The model version of each prediction, by source partition and offset.</summary>
    public IReadOnlyDictionary<(int Partition, long Offset), string> ModelVersions => _versions;

    /// <summary>Produced records with neither a prediction nor a dead letter (lost).</summary>
    public int Unaccounted(IEnumerable<ProducedRecord> records) => UnaccountedRecords(records).Count;

    /// <summary>The lost records themselves (partition, offset, event id), for the failure message.</summary>
    public List<ProducedRecord> UnaccountedRecords(IEnumerable<ProducedRecord> records) =>
        [.. records.Where(r => !_predicted.ContainsKey((r.Partition, r.Offset)) && !_deadLettered.ContainsKey((r.Partition, r.Offset)))];

    public Task RunAsync(CancellationToken ct) => Task.Factory.StartNew(() =>
    {
        while (!ct.IsCancellationRequested)
        {
            ConsumeResult<byte[], byte[]>? r;
            try
            {
                r = _consumer.Consume(TimeSpan.FromMilliseconds(100));
            }
            catch (ConsumeException)
            {
                continue;
            }
            if (r is null) continue;
            // A record at an offset already read is this reader reading again (its group rebalanced, or
            // the cluster reset its position), not a second output: skip it. Duplicates are new records
            // (new offsets) for an input already accounted.
            if (_positions.TryGetValue(r.TopicPartition, out var next) && r.Offset.Value < next)
            {
                Interlocked.Increment(ref _rereads);
                continue;
            }
            _positions[r.TopicPartition] = r.Offset.Value + 1;
            if (r.Topic == DeadLetterTopic) AccountDeadLetter(r);
            else AccountPrediction(r.Message.Value);
        }
        _consumer.Close();
    }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private void AccountDeadLetter(ConsumeResult<byte[], byte[]> r)
    {
        var h = r.Message.Headers;
        if (h.TryGetLastBytes(KafkaPredictionSink.SourcePartitionHeader, out var p) && h.TryGetLastBytes(KafkaPredictionSink.SourceOffsetHeader, out var o))
        {
            var key = (int.Parse(Encoding.ASCII.GetString(p), CultureInfo.InvariantCulture), long.Parse(Encoding.ASCII.GetString(o), CultureInfo.InvariantCulture));
            var reason = h.TryGetLastBytes(KafkaPredictionSink.ReasonHeader, out var rb) ? Encoding.UTF8.GetString(rb) : "?";
            if (!_deadLettered.TryAdd(key, reason)) Interlocked.Increment(ref _duplicates);
        }
        else Interlocked.Increment(ref _undecodable);
    }

    private void AccountPrediction(byte[] value)
    {
        if (ConfluentWireFormat.TryReadHeader(value, out var id) != WireHeaderStatus.Ok)
        {
            Interlocked.Increment(ref _undecodable);
            return;
        }
        if (!_readers.TryGetValue(id, out var reader))
        {
            var schema = _registry.GetSchemaAsync(id, CancellationToken.None).GetAwaiter().GetResult();
            _readers[id] = reader = new GenericDatumReader<GenericRecord>(schema, schema);
        }
        using var stream = new MemoryStream(value, ConfluentWireFormat.HeaderSize, value.Length - ConfluentWireFormat.HeaderSize);
        var record = reader.Read(null!, new BinaryDecoder(stream));
        var key = ((int)record["source_partition"], (long)record["source_offset"]);
        if (!_predicted.TryAdd(key, (string)record["event_id"]))
        {
            Interlocked.Increment(ref _duplicates);
            if (_duplicateKeys.Count < 100_000) _duplicateKeys.Enqueue(key);
        }
        if (record.TryGetValue("degraded", out var degraded) && degraded is string why) _degraded[key] = why;
        _versions[key] = (string)record["model_version"];
    }

    public void Dispose() => _consumer.Dispose();
}
