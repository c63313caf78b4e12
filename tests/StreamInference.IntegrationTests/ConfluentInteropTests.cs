using Avro;
using Avro.Generic;
using Confluent.SchemaRegistry;
using Confluent.Kafka.SyncOverAsync;
using Confluent.SchemaRegistry.Serdes;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The processor between Confluent's own serdes, as users run it: an upstream service producing with the official
/// <see cref="AvroSerializer{T}"/> (the project's event schema, then an evolved writer schema), <c>serve</c> as a
/// child process, and a downstream consumer reading with the official <see cref="AvroDeserializer{T}"/>.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class ConfluentInteropTests(ServicesFixture services, ITestOutputHelper output)
{
    private const int EventsPerWriter = 400;

    /// <summary>The project's schema evolved the way upstream teams evolve it: fields reordered, an optional field added.</summary>
    private static readonly RecordSchema EvolvedWriter = (RecordSchema)AvroSchema.Parse("""
        {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
          {"name":"merchant_id","type":"string"},
          {"name":"amount","type":"double"},
          {"name":"device_id","type":["null","string"],"default":null},
          {"name":"card_id","type":["null","string"],"default":null},
          {"name":"event_id","type":"string"},
          {"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},
          {"name":"country","type":"string"},
          {"name":"is_foreign","type":"boolean","default":false},
          {"name":"currency","type":"string","default":"EUR"},
          {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}}
        ]}
        """);

    [Fact]
    public async Task OfficialSerdesOnBothSides_NothingLost_EvolvedWriterScoredIdentically_DeadLettersDecodable()
    {
        var topics = await services.CreateTopicsAsync(3);
        var settings = services.ChildSettings(services.ProcessorOptions(topics));
        settings["Kafka:OutputKeyFormat"] = "Avro";
        using var processor = await ProcessorHarness.StartChildAsync(settings);

        using var registry = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = services.SchemaRegistryUrl });
        var serializerConfig = new AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic };
        using var producer = new ProducerBuilder<string, GenericRecord>(new ProducerConfig { BootstrapServers = services.BootstrapServers, EnableIdempotence = true })
            .SetValueSerializer(new AvroSerializer<GenericRecord>(registry, serializerConfig))
            .Build();

        // The same payments under both writer schemas. Each payment has its own card (per writer), so the stream's
        // window state of one copy cannot reach the other; merchants and their materialized features are shared.
        var generator = new PaymentGenerator(seed: 23);
        var start = DateTimeOffset.UtcNow.AddMinutes(-5);
        var payments = Enumerable.Range(0, EventsPerWriter).Select(i => generator.Next(start.AddMilliseconds(i * 10))).ToList();
        var deadLetterIds = new HashSet<string>();
        foreach (var (writer, tag) in new[] { (ServicesFixture.PaymentEventSchema, "v1"), (EvolvedWriter, "v2") })
        {
            for (var i = 0; i < payments.Count; i++)
            {
                var p = payments[i];
                var eventId = $"{tag}-{i}";
                var noCard = i % 50 == 7; // upstream bug: no entity key; must come back as a dead letter
                if (noCard) deadLetterIds.Add(eventId);
                var record = Record(writer, p, eventId, noCard ? null : $"{tag}-card-{i}");
                await producer.ProduceAsync(topics.Input, new Message<string, GenericRecord> { Key = $"{tag}-card-{i}", Value = record });
            }
        }
        producer.Flush(TimeSpan.FromSeconds(30));
        var versions = await registry.GetSubjectVersionsAsync($"{topics.Input}-value");
        Assert.Equal(2, versions.Count); // two writer schemas, registered by the official serializer

        // Downstream: Avro keys and values through the official deserializers.
        var expected = 2 * EventsPerWriter - deadLetterIds.Count;
        var predictions = new Dictionary<string, (string Key, double Score, string Version)>();
        var duplicates = 0;
        using (var consumer = new ConsumerBuilder<string, GenericRecord>(Consumer())
                   .SetKeyDeserializer(new AvroDeserializer<string>(registry).AsSyncOverAsync())
                   .SetValueDeserializer(new AvroDeserializer<GenericRecord>(registry).AsSyncOverAsync())
                   .Build())
        {
            consumer.Subscribe(topics.Predictions);
            var deadline = Stopwatch.StartNew();
            while (predictions.Count < expected && deadline.Elapsed < TimeSpan.FromSeconds(120))
            {
                var m = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (m is null) continue;
                var eventId = (string)m.Message.Value["event_id"];
                if (!predictions.TryAdd(eventId, (m.Message.Key, (double)m.Message.Value["score"], (string)m.Message.Value["model_version"]))) duplicates++;
            }
            // Anything more (a duplicate) would arrive right behind.
            for (var quiet = Stopwatch.StartNew(); quiet.Elapsed < TimeSpan.FromSeconds(2);)
                if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is { } extra && !predictions.TryAdd((string)extra.Message.Value["event_id"], default)) duplicates++;
        }
        output.WriteLine($"{predictions.Count} predictions of {expected} expected; {duplicates} duplicates");
        Assert.True(expected == predictions.Count, $"lost {expected - predictions.Count} predictions\n{processor.Tail()}");
        Assert.Equal(0, duplicates);

        var compared = 0;
        for (var i = 0; i < payments.Count; i++)
        {
            if (deadLetterIds.Contains($"v1-{i}")) continue;
            var (key1, score1, _) = predictions[$"v1-{i}"];
            var (key2, score2, _) = predictions[$"v2-{i}"];
            Assert.Equal($"v1-card-{i}", key1);
            Assert.Equal($"v2-card-{i}", key2);
            Assert.True(score1 == score2, $"payment {i}: {score1} under the project's schema, {score2} under the evolved writer schema");
            compared++;
        }
        Assert.Equal(EventsPerWriter - deadLetterIds.Count / 2, compared);

        // Dead letters carry the original bytes: the official deserializer reads them as the upstream wrote them.
        var deadLetters = new Dictionary<string, string>();
        using (var consumer = new ConsumerBuilder<byte[], GenericRecord>(Consumer())
                   .SetValueDeserializer(new AvroDeserializer<GenericRecord>(registry).AsSyncOverAsync())
                   .Build())
        {
            consumer.Subscribe(topics.DeadLetters);
            var deadline = Stopwatch.StartNew();
            while (deadLetters.Count < deadLetterIds.Count && deadline.Elapsed < TimeSpan.FromSeconds(60))
            {
                if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is not { } m) continue;
                var reason = System.Text.Encoding.UTF8.GetString(m.Message.Headers.GetLastBytes(StreamInference.Infrastructure.Kafka.KafkaPredictionSink.ReasonHeader));
                deadLetters[(string)m.Message.Value["event_id"]] = reason;
                Assert.Null(m.Message.Value["card_id"]);
            }
        }
        Assert.Equal(deadLetterIds.Order(), deadLetters.Keys.Order());
        Assert.All(deadLetters.Values, r => Assert.Equal(DeadLetterReasons.MissingEntityKey, r));
    }

    private ConsumerConfig Consumer() => new()
    {
        BootstrapServers = services.BootstrapServers,
        GroupId = ServicesFixture.NewGroup("downstream"),
        AutoOffsetReset = AutoOffsetReset.Earliest,
        EnableAutoCommit = false,
    };

    private static GenericRecord Record(RecordSchema schema, PaymentEvent p, string eventId, string? cardId)
    {
        var record = new GenericRecord(schema);
        record.Add("event_id", eventId);
        record.Add("event_time", p.EventTime.UtcDateTime);
        record.Add("card_id", cardId);
        record.Add("merchant_id", p.MerchantId);
        record.Add("amount", p.Amount);
        record.Add("currency", p.Currency);
        record.Add("channel", new GenericEnum((EnumSchema)schema["channel"].Schema, p.Channel.ToString()));
        record.Add("country", p.Country);
        record.Add("is_foreign", p.IsForeign);
        if (schema.Contains("device_id")) record.Add("device_id", "device-" + eventId);
        return record;
    }
}
