namespace StreamInference.IntegrationTests;

/// <summary>Reads a prediction topic from its beginning and decodes every record with the schema its header names.</summary>
public static class PredictionReader
{
    public static Task<List<Avro.Generic.GenericRecord>> ReadAsync(string bootstrapServers, IAvroSchemaRegistry registry, string topic, int expected,
        TimeSpan? timeout = null) => ReadAsync(bootstrapServers, registry, topic, expected, keyedByEntity: true, timeout);

    /// <summary>Any Confluent-framed Avro records (comparison reports, drift reports): no check of the key.</summary>
    public static async Task<List<Avro.Generic.GenericRecord>> ReadAsync(string bootstrapServers, IAvroSchemaRegistry registry, string topic, int expected,
        bool keyedByEntity, TimeSpan? timeout = null)
    {
        var list = new List<Avro.Generic.GenericRecord>();
        using var consumer = new Confluent.Kafka.ConsumerBuilder<byte[], byte[]>(new Confluent.Kafka.ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = "reader-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = Confluent.Kafka.AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe(topic);
        var sw = Stopwatch.StartNew();
        while (list.Count < expected && sw.Elapsed < (timeout ?? TimeSpan.FromSeconds(60)))
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null) continue;
            Assert.Equal(WireHeaderStatus.Ok, ConfluentWireFormat.TryReadHeader(r.Message.Value, out var id));
            var schema = await registry.GetSchemaAsync(id, CancellationToken.None);
            var reader = new Avro.Generic.GenericDatumReader<Avro.Generic.GenericRecord>(schema, schema);
            using var ms = new MemoryStream(r.Message.Value, 5, r.Message.Value.Length - 5);
            var record = reader.Read(null!, new Avro.IO.BinaryDecoder(ms));
            if (keyedByEntity) Assert.Equal((string)record["entity_key"], System.Text.Encoding.UTF8.GetString(r.Message.Key));
            list.Add(record);
        }
        consumer.Close();
        return list;
    }
}
