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

    private static AvroSchema Load() => EmbeddedResources.AvroSchema("label.avsc");

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
        return ConfluentWireFormat.Frame(_writer, record, SchemaId);
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

/// <summary>Reads a labels topic whole (to its high watermarks when the read starts): event id → 1 or 0, the first label of an event winning.</summary>
public static class LabelTopic
{
    public static async Task<Dictionary<string, double>> ReadAllAsync(string bootstrapServers, IAvroSchemaRegistry registry, string topic, CancellationToken ct)
    {
        var labels = new Dictionary<string, double>(StringComparer.Ordinal);
        using var consumer = new Confluent.Kafka.ConsumerBuilder<byte[], byte[]>(new Confluent.Kafka.ConsumerConfig
        {
            BootstrapServers = bootstrapServers, GroupId = "streaminference-labels-" + Guid.NewGuid().ToString("N"),
            EnableAutoCommit = false, AutoOffsetReset = Confluent.Kafka.AutoOffsetReset.Earliest,
        }).Build();
        using var admin = new Confluent.Kafka.AdminClientBuilder(new Confluent.Kafka.AdminClientConfig { BootstrapServers = bootstrapServers }).Build();
        var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.SingleOrDefault(t => t.Topic == topic);
        if (metadata is null || metadata.Error.IsError || metadata.Partitions.Count == 0)
            throw new InvalidOperationException($"Labels topic '{topic}' does not exist or has no partitions.");
        var ends = new Dictionary<int, long>();
        foreach (var p in metadata.Partitions)
        {
            var w = consumer.QueryWatermarkOffsets(new Confluent.Kafka.TopicPartition(topic, p.PartitionId), TimeSpan.FromSeconds(10));
            if (w.High.Value > w.Low.Value) ends[p.PartitionId] = w.High.Value;
        }
        consumer.Assign(ends.Keys.Select(p => new Confluent.Kafka.TopicPartitionOffset(topic, p, Confluent.Kafka.Offset.Beginning)));
        var writers = new Dictionary<int, global::Avro.Schema>();
        while (ends.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            var r = consumer.Consume(TimeSpan.FromMilliseconds(500));
            if (r is null) continue;
            if (r.Offset.Value + 1 >= ends.GetValueOrDefault(r.Partition.Value, long.MaxValue)) ends.Remove(r.Partition.Value);
            if (r.Message.Value is not { } value || ConfluentWireFormat.TryReadHeader(value, out var id) != WireHeaderStatus.Ok)
                throw new InvalidDataException($"{topic}[{r.Partition.Value}]@{r.Offset.Value}: not a Confluent-framed Avro label.");
            if (!writers.TryGetValue(id, out var writer)) writers[id] = writer = await registry.GetSchemaAsync(id, ct).ConfigureAwait(false);
            var label = LabelRecords.Decode(value, writer);
            labels.TryAdd(label.EventId, label.Label ? 1 : 0);
        }
        consumer.Close();
        return labels;
    }
}
