using Avro;
using Avro.Generic;
using Avro.IO;
using StreamInference.Infrastructure.Avro;
using AvroSchema = Avro.Schema;

namespace StreamInference.Core.Tests;

public class WireFormatTests
{
    [Fact]
    public void Header_RoundTrips_SchemaIdBigEndian()
    {
        var buffer = new byte[8];
        ConfluentWireFormat.WriteHeader(buffer, 0x01020304);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 4 }, buffer[..5]);
        Assert.Equal(WireHeaderStatus.Ok, ConfluentWireFormat.TryReadHeader(buffer, out var id));
        Assert.Equal(0x01020304, id);
    }

    [Theory]
    [InlineData(new byte[] { }, WireHeaderStatus.Empty)]
    [InlineData(new byte[] { 1, 0, 0, 0, 1, 2 }, WireHeaderStatus.WrongMagicByte)]
    [InlineData(new byte[] { 0, 0, 0 }, WireHeaderStatus.TooShort)]
    public void Header_RejectsBadFraming(byte[] payload, WireHeaderStatus expected)
    {
        Assert.Equal(expected, ConfluentWireFormat.TryReadHeader(payload, out _));
    }
}

/// <summary>In-memory registry for unit tests of the decoder (the HTTP client is covered by integration tests).</summary>
internal sealed class InMemoryRegistry : IAvroSchemaRegistry
{
    private readonly Dictionary<int, AvroSchema> _schemas = [];
    public int Lookups { get; private set; }
    public void Add(int id, AvroSchema schema) => _schemas[id] = schema;
    public Task<AvroSchema> GetSchemaAsync(int id, CancellationToken ct)
    {
        Lookups++;
        return _schemas.TryGetValue(id, out var s)
            ? Task.FromResult(s)
            : throw new Confluent.SchemaRegistry.SchemaRegistryException("Schema not found", System.Net.HttpStatusCode.NotFound, RegistryErrors.SchemaNotFound);
    }
    public Task<int> RegisterAsync(string subject, AvroSchema schema, CancellationToken ct) => throw new NotSupportedException();
    public Task<int> LookupAsync(string subject, AvroSchema schema, CancellationToken ct) => throw new NotSupportedException();
    public Task<(int Id, AvroSchema Schema)> GetLatestAsync(string subject, CancellationToken ct) => throw new NotSupportedException();
}

public class AvroEventDecoderTests
{
    private static readonly string SchemaDir = Path.Combine(AppContext.BaseDirectory, "schemas");
    private static readonly RecordSchema Reader = (RecordSchema)AvroSchema.Parse(File.ReadAllText(Path.Combine(SchemaDir, "payment-event.avsc")));
    private static readonly FeaturePlan Plan = FeatureSetLoader.LoadFile(Path.Combine(SchemaDir, "features", "card_payments.yaml"));

    // A newer upstream writer: one extra field the reader does not know, and no 'currency' (reader default applies).
    private static readonly RecordSchema WriterV2 = (RecordSchema)AvroSchema.Parse("""
        {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
          {"name":"event_id","type":"string"},
          {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
          {"name":"card_id","type":["null","string"],"default":null},
          {"name":"merchant_id","type":"string"},
          {"name":"amount","type":"double"},
          {"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},
          {"name":"country","type":"string"},
          {"name":"is_foreign","type":"boolean","default":false},
          {"name":"terminal_id","type":"string","default":""}
        ]}
        """);

    private static byte[] Encode(RecordSchema schema, int id, string? cardId, double amount = 42.5, string channel = "ONLINE", DateTime? time = null)
    {
        var r = new GenericRecord(schema);
        foreach (var f in schema.Fields)
        {
            object? v = f.Name switch
            {
                "event_id" => "e-1",
                "event_time" => time ?? new DateTime(2026, 3, 4, 13, 0, 0, DateTimeKind.Utc),
                "card_id" => cardId,
                "merchant_id" => "m-1",
                "amount" => amount,
                "currency" => "EUR",
                "channel" => new GenericEnum((EnumSchema)f.Schema, channel),
                "country" => "DE",
                "is_foreign" => true,
                "terminal_id" => "T-9",
                _ => null,
            };
            r.Add(f.Name, v);
        }
        using var ms = new MemoryStream();
        var header = new byte[5];
        ConfluentWireFormat.WriteHeader(header, id);
        ms.Write(header);
        new GenericDatumWriter<GenericRecord>(schema).Write(r, new BinaryEncoder(ms));
        return ms.ToArray();
    }

    private static EventBatch Batch(params byte[]?[] values)
    {
        var batch = new EventBatch(Plan, 16, 1);
        var p = new PartitionOffsets("payments", 0);
        for (var i = 0; i < values.Length; i++)
            batch.Records[i] = new InputRecord(p, p.Track(i), i, null, values[i], 1_000, null);
        batch.Count = values.Length;
        return batch;
    }

    [Fact]
    public async Task Decoder_ResolvesNewerWriterSchema_AgainstReaderSchema()
    {
        var registry = new InMemoryRegistry();
        registry.Add(7, WriterV2);
        var decoder = new AvroEventDecoder(registry, Reader, Plan);
        var batch = Batch(Encode(WriterV2, 7, "card-1", amount: 99.5, channel: "ATM"));

        await decoder.DecodeAsync(batch, CancellationToken.None);

        Assert.Null(batch.DeadLetterReasons[0]);
        Assert.Equal("card-1", batch.EntityKeys[0]);
        Assert.Equal("e-1", batch.EventIds[0]);
        Assert.Equal(new DateTimeOffset(2026, 3, 4, 13, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), batch.EventTimesMs[0]);
        var amountSlot = Plan.NumericFields.Single(f => f.Name == "amount").Slot;
        Assert.Equal(99.5, batch.NumericRow(0)[amountSlot]);
        var channelSlot = Plan.TextFields.Single(f => f.Name == "channel").Slot;
        Assert.Equal("ATM", batch.TextRow(0)[channelSlot]);
    }

    [Fact]
    public async Task Decoder_DeadLettersEveryKindOfBadInput_WithItsReason()
    {
        var registry = new InMemoryRegistry();
        registry.Add(1, Reader);
        var decoder = new AvroEventDecoder(registry, Reader, Plan, maxMessageBytes: 4096);
        var good = Encode(Reader, 1, "card-1");
        var wrongMagic = (byte[])good.Clone();
        wrongMagic[0] = 0x42;
        var unknownId = (byte[])good.Clone();
        ConfluentWireFormat.WriteHeader(unknownId, 12345);
        var truncated = good[..8];
        var tooLarge = new byte[5000];

        var batch = Batch(good, wrongMagic, unknownId, truncated, Encode(Reader, 1, null), [], new byte[] { 0, 0, 1 }, tooLarge, unknownId);
        await decoder.DecodeAsync(batch, CancellationToken.None);

        Assert.Equal(
            new string?[]
            {
                null, DeadLetterReasons.WrongMagicByte, DeadLetterReasons.UnknownSchemaId, DeadLetterReasons.MalformedAvro,
                DeadLetterReasons.MissingEntityKey, DeadLetterReasons.EmptyValue, DeadLetterReasons.TruncatedHeader,
                DeadLetterReasons.TooLarge, DeadLetterReasons.UnknownSchemaId,
            },
            batch.DeadLetterReasons[..9]);
        Assert.Equal(2, registry.Lookups); // id 1 once, unknown id once (then cached as unknown)
    }

    [Fact]
    public async Task Decoder_DeadLettersIncompatibleWriterSchema()
    {
        var registry = new InMemoryRegistry();
        var other = (RecordSchema)AvroSchema.Parse("""{"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[{"name":"amount","type":"string"}]}""");
        registry.Add(3, other);
        var decoder = new AvroEventDecoder(registry, Reader, Plan);
        var bytes = new byte[] { 0, 0, 0, 0, 3, 2, (byte)'x' };
        var batch = Batch(bytes);
        await decoder.DecodeAsync(batch, CancellationToken.None);
        Assert.Equal(DeadLetterReasons.IncompatibleSchema, batch.DeadLetterReasons[0]);
    }

    [Fact]
    public async Task Decoder_DeadLettersEventTimesOutside1970To2200()
    {
        var registry = new InMemoryRegistry();
        registry.Add(1, Reader);
        var decoder = new AvroEventDecoder(registry, Reader, Plan);
        var batch = Batch(
            Encode(Reader, 1, "c-1", time: new DateTime(2300, 1, 1, 0, 0, 0, DateTimeKind.Utc)),
            Encode(Reader, 1, "c-1", time: new DateTime(1969, 12, 31, 0, 0, 0, DateTimeKind.Utc)),
            Encode(Reader, 1, "c-1"));
        await decoder.DecodeAsync(batch, CancellationToken.None);
        Assert.Equal(DeadLetterReasons.InvalidEventTime, batch.DeadLetterReasons[0]);
        Assert.Equal(DeadLetterReasons.InvalidEventTime, batch.DeadLetterReasons[1]);
        Assert.Null(batch.DeadLetterReasons[2]);
    }

    [Fact]
    public void Decoder_RefusesFeatureSet_ThatNamesFieldsMissingFromReaderSchema()
    {
        var plan = FeatureSetLoader.Parse("""
            featureSet: x
            version: 1
            event: { idField: event_id, entityKeyField: card_id, timeField: event_time }
            features:
              - { name: f, event: no_such_field, default: 0 }
            """);
        var e = Assert.Throws<FeatureDefinitionException>(() => new AvroEventDecoder(new InMemoryRegistry(), Reader, plan));
        Assert.Contains("no_such_field", e.Message);
    }
}

public class LogicalTypeResolutionTests
{
    private static Avro.RecordSchema Record(string timeType) => (Avro.RecordSchema)AvroSchema.Parse(
        $$"""{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"t","type":{{timeType}}}]}""");

    [Fact]
    public void OneSidedLogicalType_ResolvesByTheUnderlyingType_BothWays()
    {
        var plain = Record("\"long\"");
        var millis = Record("""{"type":"long","logicalType":"timestamp-millis"}""");
        Assert.False(millis.CanRead(plain));                       // what Apache.Avro says on its own
        var aligned = LogicalTypeResolution.Align(plain, millis);
        Assert.NotNull(aligned);
        Assert.True(aligned.Value.Reader.CanRead(aligned.Value.Writer));
        Assert.NotNull(LogicalTypeResolution.Align(millis, plain));
        Assert.Same(millis, LogicalTypeResolution.Align(millis, millis)!.Value.Reader); // already resolvable: unchanged
    }

    [Fact]
    public void DifferentUnderlyingTypes_StayIncompatible()
    {
        var millis = Record("""{"type":"long","logicalType":"timestamp-millis"}""");
        var date = Record("""{"type":"int","logicalType":"date"}""");
        Assert.Null(LogicalTypeResolution.Align(Record("\"string\""), millis));
        Assert.Null(LogicalTypeResolution.Align(Record("\"double\""), date));
        Assert.NotNull(LogicalTypeResolution.Align(date, Record("\"long\"")));   // int → long promotion once the annotation is gone
    }
}
