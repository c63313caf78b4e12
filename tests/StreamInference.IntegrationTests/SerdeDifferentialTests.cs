using System.Globalization;
using Avro;
using Avro.Generic;
using Confluent.Kafka.SyncOverAsync;
using Confluent.SchemaRegistry;
using Confluent.SchemaRegistry.Serdes;
using StreamInference.Core.Offsets;
using StreamInference.DevServices.SchemaRegistry;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The project's fast Avro paths against Confluent's official serdes, over generated records: the event decoder
/// (Apache.Avro resolution into the batch's slots) against <see cref="AvroDeserializer{T}"/>, and
/// <see cref="PredictionWriter"/> (field by field) against <see cref="AvroSerializer{T}"/>, byte for byte. The
/// benchmark suite shows why the fast paths stay (decode and encode rows, official vs own).
/// </summary>
public sealed class SerdeDifferentialTests : IAsyncLifetime
{
    private static readonly FeaturePlan Plan = ServicesFixture.CardPaymentsPlan;
    private static readonly RecordSchema Reader = ServicesFixture.PaymentEventSchema;
    private DevSchemaRegistry _server = null!;
    private CachedSchemaRegistryClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await DevSchemaRegistry.StartAsync();
        _client = new CachedSchemaRegistryClient(new SchemaRegistryConfig { Url = _server.Url });
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    /// <summary>Writer schemas upstream teams produce with; the reader is the project's payment-event.avsc.</summary>
    public static TheoryData<string, string> Writers => new()
    {
        { "same", Reader.ToString() },
        // reordered, an optional field added
        { "evolved", """
          {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
            {"name":"merchant_id","type":"string"},{"name":"amount","type":"double"},
            {"name":"device_id","type":["null","string"],"default":null},{"name":"card_id","type":["null","string"],"default":null},
            {"name":"event_id","type":"string"},{"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},
            {"name":"country","type":"string"},{"name":"is_foreign","type":"boolean","default":false},
            {"name":"currency","type":"string","default":"EUR"},{"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}}]}
          """ },
        // fields removed (the reader's defaults fill them), a promoted type (float → double), a plain string where the reader has a union
        { "older", """
          {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
            {"name":"event_id","type":"string"},{"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"card_id","type":"string"},{"name":"merchant_id","type":"string"},{"name":"amount","type":"float"},
            {"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},{"name":"country","type":"string"}]}
          """ },
        // a long amount promoted to double; fields without defaults where the reader has them
        { "promoted", """
          {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
            {"name":"event_id","type":"string"},{"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"card_id","type":["null","string"],"default":null},{"name":"merchant_id","type":"string"},{"name":"amount","type":"long"},
            {"name":"currency","type":"string"},{"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},
            {"name":"country","type":"string"},{"name":"is_foreign","type":"boolean"}]}
          """ },
        // logical types on one side only: a plain long event time (the reader has timestamp-millis), which schema
        // resolution reads by its underlying type
        { "unannotated", """
          {"type":"record","name":"PaymentEvent","namespace":"streaminference.examples.payments","fields":[
            {"name":"event_id","type":"string"},{"name":"event_time","type":"long"},
            {"name":"card_id","type":["null","string"],"default":null},{"name":"merchant_id","type":"string"},{"name":"amount","type":"double"},
            {"name":"currency","type":"string"},{"name":"channel","type":{"type":"enum","name":"Channel","symbols":["POS","ONLINE","ATM"]}},
            {"name":"country","type":"string"},{"name":"is_foreign","type":"boolean"}]}
          """ },
    };

    [Theory]
    [MemberData(nameof(Writers))]
    public async Task Decoder_ReadsWhatTheOfficialDeserializerReads(string name, string writerJson)
    {
        var writer = (RecordSchema)AvroSchema.Parse(writerJson);
        var topic = $"events-{name}";
        var serializer = new AvroSerializer<GenericRecord>(_client, new AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic }).AsSyncOverAsync();
        var deserializer = new AvroDeserializer<GenericRecord>(_client, new AvroDeserializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic }).AsSyncOverAsync();
        var context = new SerializationContext(MessageComponentType.Value, topic);
        var random = new Random(name.GetHashCode(StringComparison.Ordinal) & 0xffff);
        var generator = new PaymentGenerator(seed: 3);
        const int count = 500;
        var payloads = new byte[count][];
        for (var i = 0; i < count; i++)
            payloads[i] = serializer.Serialize(Generate(writer, generator.Next(DateTimeOffset.FromUnixTimeMilliseconds(random.NextInt64(0, 4_000_000_000_000))), random, i), context);

        var decoder = new AvroEventDecoder(new AvroSchemaRegistry(_client), Reader, Plan);
        var batch = new EventBatch(Plan, count, 1);
        var partition = new PartitionOffsets(topic, 0);
        for (var i = 0; i < count; i++) batch.Records[i] = new InputRecord(partition, partition.Track(i), i, null, payloads[i], 0, null);
        batch.Count = count;
        await decoder.DecodeAsync(batch, CancellationToken.None);

        var keyless = 0;
        for (var i = 0; i < count; i++)
        {
            var official = deserializer.Deserialize(payloads[i], isNull: false, context);
            if (Text(official, "card_id") is not { Length: > 0 })
            {
                keyless++;
                Assert.Equal(DeadLetterReasons.MissingEntityKey, batch.DeadLetterReasons[i]);
                continue;
            }
            Assert.True(batch.DeadLetterReasons[i] is null, $"{name} #{i}: dead-lettered {batch.DeadLetterReasons[i]}: {batch.DeadLetterDetails[i]}");
            Assert.Equal(Text(official, Plan.IdField), batch.EventIds[i]);
            Assert.Equal(Text(official, Plan.EntityKeyField), batch.EntityKeys[i]);
            Assert.Equal((long)Number(official, Plan.TimeField), batch.EventTimesMs[i]);
            var numerics = batch.NumericRow(i);
            foreach (var f in Plan.NumericFields)
                Assert.True(Number(official, f.Name).Equals(numerics[f.Slot]), $"{name} #{i} {f.Name}: official {Number(official, f.Name)}, decoder {numerics[f.Slot]}");
            var texts = batch.TextRow(i);
            foreach (var f in Plan.TextFields) Assert.Equal(Text(official, f.Name), texts[f.Slot]);
        }
        // The generated null keys (where the writer's card_id may be null) were met on both sides.
        Assert.InRange(keyless, writer["card_id"].Schema.Tag == Avro.Schema.Type.Union ? 1 : 0, count / 5);
    }

    private static GenericRecord Generate(RecordSchema schema, PaymentEvent p, Random random, int i)
    {
        var record = new GenericRecord(schema);
        foreach (var field in schema.Fields)
        {
            object? value = field.Name switch
            {
                "event_id" => $"évènement-{i}-{p.EventId}",
                "event_time" => field.Schema is LogicalSchema ? p.EventTime.UtcDateTime : p.EventTime.ToUnixTimeMilliseconds(),
                "card_id" => field.Schema.Tag == Avro.Schema.Type.Union && random.NextDouble() < 0.05 ? null : p.CardId,
                "merchant_id" => p.MerchantId,
                "amount" => field.Schema.Tag switch
                {
                    Avro.Schema.Type.Float => (object)(float)p.Amount,
                    Avro.Schema.Type.Long => (object)(long)Math.Round(p.Amount),
                    _ => (object)(random.NextDouble() < 0.02 ? 0.0 : p.Amount),
                },
                "currency" => random.NextDouble() < 0.5 ? "EUR" : "USD",
                "channel" => new GenericEnum((EnumSchema)field.Schema, p.Channel.ToString()),
                "country" => p.Country,
                "is_foreign" => p.IsForeign,
                "device_id" => random.NextDouble() < 0.5 ? null : "device-" + i.ToString(CultureInfo.InvariantCulture),
                _ => throw new InvalidOperationException($"no generator for {field.Name}"),
            };
            record.Add(field.Name, value);
        }
        return record;
    }

    /// <summary>A field of the official record by name, or the reader schema's default when the writer lacks it.</summary>
    private static object? Value(GenericRecord official, string field) =>
        official.TryGetValue(field, out var value) ? value : DefaultOf(field);

    private static object? DefaultOf(string field)
    {
        var token = Reader.Fields.Single(f => f.Name == field).DefaultValue;
        return token?.Type switch
        {
            Newtonsoft.Json.Linq.JTokenType.Boolean => (bool)token,
            Newtonsoft.Json.Linq.JTokenType.String => (string?)token,
            _ => null,
        };
    }

    private static double Number(GenericRecord official, string field) => Value(official, field) switch
    {
        null => double.NaN,
        double d => d,
        float f => f,
        int n => n,
        long n => n,
        bool b => b ? 1 : 0,
        DateTime t => (t.ToUniversalTime() - DateTime.UnixEpoch).TotalMilliseconds,
        var other => throw new InvalidOperationException($"{field}: {other.GetType()}"),
    };

    private static string? Text(GenericRecord official, string field) => Value(official, field) switch
    {
        null => null,
        string s => s,
        GenericEnum e => e.Value,
        var other => Convert.ToString(other, CultureInfo.InvariantCulture),
    };

    [Fact]
    public void PredictionWriter_WritesTheOfficialSerializersBytes()
    {
        var topic = "predictions-diff";
        var serializer = new AvroSerializer<GenericRecord>(_client, new AvroSerializerConfig { SubjectNameStrategy = SubjectNameStrategy.Topic }).AsSyncOverAsync();
        var context = new SerializationContext(MessageComponentType.Value, topic);
        var random = new Random(17);
        var schemaId = -1;
        var compared = 0;
        foreach (var width in new[] { 1, 2, 3 })
        {
            foreach (var degraded in new[] { false, true })
            {
                var batch = Predictions(random, width, degraded);
                // Every arm, and a deployment version on half the batches (null on the others).
                for (var k = 0; k < batch.OkCount; k++) batch.Arms[k] = (ServingArm)random.Next(4);
                batch.DeploymentVersion = degraded ? random.NextInt64(1, long.MaxValue) : null;
                var official = batch.Records.Take(batch.Count).Select((_, k) => serializer.Serialize(Prediction((RecordSchema)PredictionWriter.Schema, batch, k, "fraud", "7", 0), context)).ToList();
                if (schemaId < 0) ConfluentWireFormat.TryReadHeader(official[0], out schemaId);
                var writer = new PredictionWriter(schemaId, "fraud", "7", primaryScoreIndex: 0);
                for (var k = 0; k < batch.OkCount; k++)
                {
                    Assert.Equal(Convert.ToHexString(official[k]), Convert.ToHexString(writer.Write(batch, batch.Rows[k], k)));
                    compared++;
                }
            }
        }
        Assert.Equal(6 * 200, compared);
    }

    [Fact]
    public async Task PredictionWriter_FollowsTheSubjectsLatestSchema_AsTheOfficialSerializerWithUseLatestVersion()
    {
        var topic = "predictions-latest";
        // The downstream team evolved the prediction schema: a field added with a default, fields reordered.
        var evolved = (RecordSchema)AvroSchema.Parse("""
            {"type":"record","name":"Prediction","namespace":"streaminference","fields":[
              {"name":"entity_key","type":"string"},{"name":"event_id","type":"string"},
              {"name":"region","type":"string","default":"eu-west"},
              {"name":"score","type":"double"},{"name":"scores","type":{"type":"array","items":"double"}},
              {"name":"model_name","type":"string"},{"name":"model_version","type":"string"},
              {"name":"label","type":["null","string"],"default":null},{"name":"features_defaulted","type":"int"},
              {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
              {"name":"scored_at","type":{"type":"long","logicalType":"timestamp-millis"}},
              {"name":"source_partition","type":"int"},{"name":"source_offset","type":"long"},
              {"name":"degraded","type":["null","string"],"default":null}]}
            """);
        await _client.RegisterSchemaAsync($"{topic}-value", new Confluent.SchemaRegistry.Schema(PredictionWriter.Schema.ToString(), SchemaType.Avro));
        await _client.RegisterSchemaAsync($"{topic}-value", new Confluent.SchemaRegistry.Schema(evolved.ToString(), SchemaType.Avro));

        using var registry = new AvroSchemaRegistry(_client);
        var output = await OutputSchema.ResolveAsync(registry, new SchemaRegistryOptions { UseLatestVersion = true }, topic, isKey: false, PredictionWriter.Schema, CancellationToken.None);
        Assert.False(output.IsBuiltIn);
        var writer = new PredictionWriter(output.Id, "fraud", "7", primaryScoreIndex: 1) { Transcoder = output.CreateTranscoder() };
        var serializer = new AvroSerializer<GenericRecord>(_client, new AvroSerializerConfig
        {
            SubjectNameStrategy = SubjectNameStrategy.Topic, AutoRegisterSchemas = false, UseLatestVersion = true,
        }).AsSyncOverAsync();
        var context = new SerializationContext(MessageComponentType.Value, topic);
        var batch = Predictions(new Random(3), width: 2, degraded: true);
        for (var k = 0; k < batch.OkCount; k++)
        {
            var record = Prediction(evolved, batch, k, "fraud", "7", 1);
            record.Add("region", "eu-west");
            Assert.Equal(Convert.ToHexString(serializer.Serialize(record, context)), Convert.ToHexString(writer.Write(batch, batch.Rows[k], k)));
        }
    }

    /// <summary>200 scored rows with generated values: unicode ids, labels or none, every partition and offset range.</summary>
    private static EventBatch Predictions(Random random, int width, bool degraded)
    {
        const int rows = 200;
        var batch = new EventBatch(Plan, rows, width);
        var partitions = Enumerable.Range(0, 4).Select(p => new PartitionOffsets("in", p * 250 + random.Next(0, 250))).ToArray();
        var next = partitions.Select(_ => random.NextInt64(0, 1L << 40)).ToArray();
        for (var i = 0; i < rows; i++)
        {
            var which = random.Next(partitions.Length);
            var p = partitions[which];
            var offset = next[which] += random.Next(1, 1_000_000);
            batch.Records[i] = new InputRecord(p, p.Track(offset), offset, null, null, 0, null);
        }
        batch.Count = rows;
        batch.CollectCleanRows();
        for (var i = 0; i < rows; i++)
        {
            batch.EventIds[i] = random.Next(4) switch { 0 => $"e-{i}", 1 => $"ünïcødé-€-{i}-日本", 2 => new string('x', random.Next(1, 300)), _ => Guid.NewGuid().ToString() };
            batch.EntityKeys[i] = $"card-{random.Next(100_000):D6}";
            batch.EventTimesMs[i] = random.NextInt64(0, 7_258_118_400_000);
            batch.DefaultedCounts[i] = random.Next(0, 13);
        }
        for (var k = 0; k < rows; k++)
        {
            foreach (ref var s in batch.ScoreRow(k)) s = random.Next(10) == 0 ? 0.0 : random.NextDouble();
            batch.Labels[k] = random.Next(3) switch { 0 => null, 1 => "0", _ => "fraud" };
        }
        batch.ScoredAtMs = random.NextInt64(0, 7_258_118_400_000);
        batch.FeatureStoreUnavailable = degraded;
        return batch;
    }

    private static GenericRecord Prediction(RecordSchema schema, EventBatch b, int k, string model, string version, int primary)
    {
        var row = b.Rows[k];
        var scores = b.ScoreRow(k).ToArray();
        var record = new GenericRecord(schema);
        record.Add("event_id", b.EventIds[row]);
        record.Add("entity_key", b.EntityKeys[row]);
        record.Add("model_name", model);
        record.Add("model_version", version);
        record.Add("score", scores[Math.Min(primary, scores.Length - 1)]);
        record.Add("scores", scores.Cast<object>().ToArray());
        record.Add("label", b.Labels[k]);
        record.Add("features_defaulted", b.DefaultedCounts[row]);
        record.Add("event_time", DateTimeOffset.FromUnixTimeMilliseconds(b.EventTimesMs[row]).UtcDateTime);
        record.Add("scored_at", DateTimeOffset.FromUnixTimeMilliseconds(b.ScoredAtMs).UtcDateTime);
        record.Add("source_partition", b.Records[row].Partition.Partition);
        record.Add("source_offset", b.Records[row].Offset);
        record.Add("degraded", b.FeatureStoreUnavailable ? PredictionWriter.DegradedFeatureStore : null);
        // An evolved subject schema may leave the deployment fields out (the transcoder drops them too).
        if (schema.Contains("arm")) record.Add("arm", b.Arms[k].Text());
        if (schema.Contains("deployment_version")) record.Add("deployment_version", b.DeploymentVersion);
        return record;
    }
}
