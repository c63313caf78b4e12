using System.Text;

namespace StreamInference.IntegrationTests;

/// <summary>
/// 10,000 malformed records of every kind the processor must reject, shuffled among 10,000 valid ones:
/// each bad one is dead-lettered with its reason, each good one is scored, and nothing crashes.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class MalformedInputTests(ServicesFixture services, ITestOutputHelper output)
{
    private const int MaxMessageBytes = 4096;
    private static readonly Avro.RecordSchema Writer = ServicesFixture.PaymentEventSchema;

    // A writer schema the reader cannot resolve: amount is a string.
    private const string WrongTypesSchema = """
        {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
          {"name":"event_id","type":"string"},
          {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
          {"name":"card_id","type":["null","string"],"default":null},
          {"name":"merchant_id","type":"string"},
          {"name":"amount","type":"string"},
          {"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},
          {"name":"country","type":"string"}]}
        """;

    private static readonly (string Kind, string Reason)[] Kinds =
    [
        ("wrong-magic-byte", DeadLetterReasons.WrongMagicByte),
        ("truncated-header", DeadLetterReasons.TruncatedHeader),
        ("empty-value", DeadLetterReasons.EmptyValue),
        ("unknown-schema-id", DeadLetterReasons.UnknownSchemaId),
        ("truncated-avro", DeadLetterReasons.MalformedAvro),
        ("garbage-avro", DeadLetterReasons.MalformedAvro),
        ("wrong-types", DeadLetterReasons.IncompatibleSchema),
        ("missing-entity-key", DeadLetterReasons.MissingEntityKey),
        ("missing-event-id", DeadLetterReasons.MissingEventId),
        ("nan-amount", DeadLetterReasons.NonFiniteNumber),
        ("infinite-amount", DeadLetterReasons.NonFiniteNumber),
        ("too-large", DeadLetterReasons.TooLarge),
        ("event-time-out-of-range", DeadLetterReasons.InvalidEventTime),
    ];

    [Fact]
    public async Task TenThousandMalformedRecords_AreAllDeadLetteredWithTheirReason_AndTheValidOnesAroundThemAreScored()
    {
        var topics = await services.CreateTopicsAsync(4, deadLetterPartitions: 2);
        var input = topics.Input;
        using var registry = services.RegistryClient();
        var goodId = await registry.RegisterAsync($"{input}-value", Writer, CancellationToken.None);
        var wrongTypesId = await registry.RegisterAsync($"{input}-wrong-value", AvroSchema.Parse(WrongTypesSchema), CancellationToken.None);
        var wrongTypesWriter = new Avro.Generic.GenericDatumWriter<Avro.Generic.GenericRecord>(AvroSchema.Parse(WrongTypesSchema));

        var generator = new PaymentGenerator(77);
        var random = new Random(77);
        var expected = new Dictionary<int, string?>();   // index → expected reason (null: valid)
        var messages = new List<Message<byte[], byte[]>>();
        var malformedPerKind = Kinds.ToDictionary(k => k.Kind, _ => 0);
        for (var i = 0; i < 20_000; i++)
        {
            var e = generator.Next(DateTimeOffset.UtcNow);
            string? kind = i % 2 == 1 ? Kinds[random.Next(Kinds.Length)].Kind : null;
            byte[] value = kind switch
            {
                null => SyntheticPaymentProducer.Encode(Writer, goodId, e),
                "wrong-magic-byte" => [0x01, .. SyntheticPaymentProducer.Encode(Writer, goodId, e).AsSpan(1)],
                "truncated-header" => [0x00, 0x00, 0x01],
                "empty-value" => [],
                "unknown-schema-id" => SyntheticPaymentProducer.Encode(Writer, 987_654, e),
                "truncated-avro" => SyntheticPaymentProducer.Encode(Writer, goodId, e)[..(ConfluentWireFormat.HeaderSize + 4)],
                "garbage-avro" => [.. SyntheticPaymentProducer.Encode(Writer, goodId, e)[..ConfluentWireFormat.HeaderSize], 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x42],
                "wrong-types" => EncodeWrongTypes(wrongTypesWriter, wrongTypesId, e),
                "missing-entity-key" => SyntheticPaymentProducer.Encode(Writer, goodId, e, dropKey: true),
                "missing-event-id" => SyntheticPaymentProducer.Encode(Writer, goodId, e with { EventId = "" }),
                "nan-amount" => SyntheticPaymentProducer.Encode(Writer, goodId, e with { Amount = double.NaN }),
                "infinite-amount" => SyntheticPaymentProducer.Encode(Writer, goodId, e with { Amount = double.NegativeInfinity }),
                "too-large" => SyntheticPaymentProducer.Encode(Writer, goodId, e with { MerchantId = new string('m', MaxMessageBytes) }),
                "event-time-out-of-range" => SyntheticPaymentProducer.Encode(Writer, goodId, e with { EventTime = new DateTimeOffset(2300, 1, 1, 0, 0, 0, TimeSpan.Zero) }),
                _ => throw new InvalidOperationException(kind),
            };
            if (kind is not null) malformedPerKind[kind]++;
            expected[i] = kind is null ? null : Kinds.First(k => k.Kind == kind).Reason;
            messages.Add(new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(e.CardId), Value = value });
        }

        var options = services.ProcessorOptions(topics);
        options.Features.MaxMessageBytes = MaxMessageBytes;
        await using var processor = await ProcessorHarness.StartAsync(options, output);
        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);

        var positions = new (int Partition, long Offset)[messages.Count];
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = services.BootstrapServers, LingerMs = 5 }).Build())
        {
            for (var i = 0; i < messages.Count; i++)
            {
                var index = i;
                producer.Produce(input, messages[i], r => positions[index] = (r.Partition.Value, r.Offset.Value));
            }
            producer.Flush(TimeSpan.FromSeconds(60));
        }

        await processor.WaitUntilAsync(() => audit.Predicted + audit.DeadLettered >= messages.Count, TimeSpan.FromSeconds(120));
        processor.AssertRunning("the processor stopped");
        await processor.StopAsync();
        await Task.Delay(300);
        await auditing.StopAsync();

        var wrongReason = new List<string>();
        var validNotScored = 0;
        var malformedScored = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            var key = positions[i];
            if (expected[i] is { } reason)
            {
                if (audit.Predictions.ContainsKey(key)) malformedScored++;
                else if (!audit.DeadLetters.TryGetValue(key, out var got) || got != reason) wrongReason.Add($"#{i}: expected {reason}, got {(got ?? "nothing")}");
            }
            else if (!audit.Predictions.ContainsKey(key)) validNotScored++;
        }
        output.WriteLine($"malformed {malformedPerKind.Values.Sum()} ({string.Join(", ", malformedPerKind.Select(p => $"{p.Key} {p.Value}"))}); " +
                         $"dead-lettered {audit.DeadLettered}, predicted {audit.Predicted}, wrong reason {wrongReason.Count}, valid not scored {validNotScored}");
        Assert.Equal(10_000, malformedPerKind.Values.Sum());
        Assert.All(malformedPerKind, p => Assert.True(p.Value > 500, $"{p.Key}: only {p.Value}"));
        Assert.Empty(wrongReason.Take(20));
        Assert.Equal(0, malformedScored);
        Assert.Equal(0, validNotScored);
        Assert.Equal(10_000, audit.DeadLettered);
        Assert.Equal(10_000, audit.Predicted);
    }

    private static byte[] EncodeWrongTypes(Avro.Generic.GenericDatumWriter<Avro.Generic.GenericRecord> writer, int schemaId, PaymentEvent e)
    {
        var schema = (Avro.RecordSchema)writer.Schema;
        var record = new Avro.Generic.GenericRecord(schema);
        record.Add("event_id", e.EventId);
        record.Add("event_time", e.EventTime.UtcDateTime);
        record.Add("card_id", e.CardId);
        record.Add("merchant_id", e.MerchantId);
        record.Add("amount", "twelve euros");
        record.Add("channel", new Avro.Generic.GenericEnum((Avro.EnumSchema)schema["channel"].Schema, "POS"));
        record.Add("country", e.Country);
        using var stream = new MemoryStream();
        var header = new byte[ConfluentWireFormat.HeaderSize];
        ConfluentWireFormat.WriteHeader(header, schemaId);
        stream.Write(header);
        writer.Write(record, new Avro.IO.BinaryEncoder(stream));
        return stream.ToArray();
    }
}
