using StreamInference.Core.Evaluation;
using System.Diagnostics;
using System.Text;
using Avro;
using Avro.Generic;
using Avro.IO;
using Confluent.Kafka;
using StreamInference.Infrastructure.Kafka;
using StackExchange.Redis;
using StreamInference.Batch.Synthetic;
using StreamInference.Core.Features;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Redis;

namespace StreamInference.DevServices.Synthetic;

public sealed class ProduceOptions
{
    public string Topic { get; set; } = "payments";
    public int Events { get; set; } = 10_000;
    /// <summary>Events per second; 0 = as fast as the producer goes.</summary>
    public double Rate { get; set; }
    /// <summary>Fraction of deliberately malformed records (to exercise the dead-letter path).</summary>
    public double BadRate { get; set; }
    /// <summary>Seed of the event stream.</summary>
    public int Seed { get; set; } = 7;
    /// <summary>Seed of the world (cards, merchants): 42, the training history's (<c>dev history</c>), so live traffic is the model's world.</summary>
    public int WorldSeed { get; set; } = HistoryOptions.DefaultSeed;
    /// <summary>Added to the wall clock for event times: a simulated time of day (demo --start-time). Zero: now.</summary>
    public TimeSpan ClockOffset { get; set; }
    /// <summary>From this event index on, the generator is shifted (<see cref="PaymentGenerator.Shifted"/>); null = never.</summary>
    public int? DriftAt { get; set; }
    /// <summary>
    /// Where each event's ground truth goes (schemas/label.avsc), keyed by card like the event; null: no labels. A
    /// label's delay is drawn from <see cref="LabelKnownAfterMs"/> (<see cref="LabelDelays"/>: some late, some never) and
    /// stamped on it as its label time; it is produced after that delay times <see cref="LabelTimeScale"/>.
    /// </summary>
    public string? LabelsTopic { get; set; }
    /// <summary>The feature set's label.knownAfter (default one day).</summary>
    public long LabelKnownAfterMs { get; set; } = 86_400_000;
    /// <summary>Wall time per unit of label delay: the default makes one day of delay one second.</summary>
    public double LabelTimeScale { get; set; } = 1.0 / 86_400;
}

/// <summary>Where one produced record landed, and whether it was deliberately malformed.</summary>
public readonly record struct ProducedRecord(int Partition, long Offset, string? EventId, string? BadKind);

public sealed record ProduceSummary(int Produced, int Malformed, int Failed, TimeSpan Elapsed, IReadOnlyList<ProducedRecord> Records, int Labels = 0);

/// <summary>
/// The synthetic upstream service: payment events in Confluent wire format (writer schema registered
/// under <c>&lt;topic&gt;-value</c>), keyed by card, at a target rate, with an optional share of
/// malformed records of every kind the processor must dead-letter.
/// </summary>
public static class SyntheticPaymentProducer
{
    public static readonly string[] BadKinds = ["wrong-magic-byte", "truncated-avro", "unknown-schema-id", "missing-entity-key", "empty-value"];

    public static async Task<ProduceSummary> ProduceAsync(string bootstrapServers, IAvroSchemaRegistry registry, RecordSchema schema,
        ProduceOptions options, Action<int>? progress, CancellationToken cancellationToken)
    {
        var schemaId = await registry.RegisterAsync($"{options.Topic}-value", schema, cancellationToken).ConfigureAwait(false);
        var generator = new PaymentGenerator(options.WorldSeed, streamSeed: options.Seed);
        var random = new Random(options.Seed ^ 0x5eed);
        var writer = new GenericDatumWriter<GenericRecord>(schema);
        var channelSchema = (EnumSchema)schema["channel"].Schema;
        var records = new ProducedRecord[options.Events];
        var failed = 0;
        var malformed = 0;
        var delivered = 0;
        var config = new ProducerConfig
        {
            BootstrapServers = bootstrapServers,
            EnableIdempotence = true,
            LingerMs = 5,
            ClientId = "streaminference-synthetic-producer",
        };
        using var producer = new ProducerBuilder<byte[], byte[]>(config).Build();
        LabelRecords? labels = options.LabelsTopic is { } labelsTopic
            ? new LabelRecords(await registry.RegisterAsync($"{labelsTopic}-value", LabelRecords.Schema, cancellationToken).ConfigureAwait(false))
            : null;
        var dueLabels = new PriorityQueue<GroundTruth, TimeSpan>();
        var labelRandom = new Random(options.Seed ^ 0x1abe1);
        var labelsSent = 0;
        var labelFailures = 0;
        void SendDueLabels(TimeSpan now)
        {
            while (dueLabels.TryPeek(out var label, out var at) && at <= now)
            {
                dueLabels.Dequeue();
                producer.Produce(options.LabelsTopic!, new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(label.EntityKey), Value = labels!.Encode(label) },
                    r => { if (r.Error.IsError) Interlocked.Increment(ref labelFailures); });
                labelsSent++;
            }
        }
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < options.Events; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (options.Rate > 0)
            {
                var due = TimeSpan.FromSeconds(i / options.Rate);
                var ahead = due - stopwatch.Elapsed;
                if (ahead > TimeSpan.FromMilliseconds(2)) await Task.Delay(ahead, cancellationToken).ConfigureAwait(false);
            }
            if (i == options.DriftAt) generator.Shifted = true;
            var e = generator.Next(DateTimeOffset.UtcNow + options.ClockOffset);
            string? bad = options.BadRate > 0 && random.NextDouble() < options.BadRate ? BadKinds[random.Next(BadKinds.Length)] : null;
            var value = Encode(writer, schema, channelSchema, schemaId, e, bad == "missing-entity-key");
            value = bad switch
            {
                "wrong-magic-byte" => [0x7b, .. value.AsSpan(1)],
                "truncated-avro" => value[..(ConfluentWireFormat.HeaderSize + 3)],
                "unknown-schema-id" => Reframe(value, 999_999),
                "empty-value" => [],
                _ => value,
            };
            if (bad is not null) malformed++;
            var index = i;
            var eventId = bad is null ? e.EventId : null;
            var message = new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(e.CardId), Value = value };
            await ProducerQueue.ProduceAsync(producer, options.Topic, message, report =>
            {
                if (report.Error.IsError) Interlocked.Increment(ref failed);
                else records[index] = new ProducedRecord(report.Partition.Value, report.Offset.Value, eventId, bad);
                Interlocked.Increment(ref delivered);
            }, cancellationToken).ConfigureAwait(false);
            if ((i & 1023) == 0) progress?.Invoke(i);
            if (labels is not null)
            {
                // Malformed records get labels too: the processor dead-letters their events, so their labels are orphans.
                if (LabelDelays.Draw(labelRandom, options.LabelKnownAfterMs) is { } delay)
                {
                    var eventMs = e.EventTime.ToUnixTimeMilliseconds();
                    dueLabels.Enqueue(new GroundTruth(e.EventId, e.CardId, e.IsFraud, eventMs + delay, eventMs),
                        stopwatch.Elapsed + TimeSpan.FromMilliseconds(delay * options.LabelTimeScale));
                }
                SendDueLabels(stopwatch.Elapsed);
            }
        }
        while (labels is not null && dueLabels.TryPeek(out _, out var next))
        {
            var wait = next - stopwatch.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
            SendDueLabels(stopwatch.Elapsed);
        }
        if (labels is not null) producer.Flush(cancellationToken);
        while (Volatile.Read(ref delivered) < options.Events)
        {
            cancellationToken.ThrowIfCancellationRequested();
            producer.Flush(TimeSpan.FromMilliseconds(100));
        }
        progress?.Invoke(options.Events);
        if (labelFailures > 0) throw new InvalidOperationException($"{labelFailures} of {labelsSent} labels were not delivered to '{options.LabelsTopic}'.");
        return new ProduceSummary(options.Events - failed, malformed, failed, stopwatch.Elapsed, records, labelsSent);
    }

    /// <summary>Produces the given events in order, keyed by card (e.g. a recorded history replayed onto a topic).</summary>
    public static async Task<int> ProduceEventsAsync(string bootstrapServers, IAvroSchemaRegistry registry, RecordSchema schema, string topic,
        IEnumerable<PaymentEvent> events, CancellationToken cancellationToken)
    {
        var schemaId = await registry.RegisterAsync($"{topic}-value", schema, cancellationToken).ConfigureAwait(false);
        var writer = new GenericDatumWriter<GenericRecord>(schema);
        var channelSchema = (EnumSchema)schema["channel"].Schema;
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrapServers, EnableIdempotence = true, LingerMs = 5, ClientId = "streaminference-synthetic-producer",
        }).Build();
        var failed = 0;
        var sent = 0;
        foreach (var e in events)
        {
            producer.Produce(topic, new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(e.CardId), Value = Encode(writer, schema, channelSchema, schemaId, e, false) },
                report => { if (report.Error.IsError) Interlocked.Increment(ref failed); });
            sent++;
        }
        producer.Flush(cancellationToken);
        if (failed > 0) throw new InvalidOperationException($"{failed} of {sent} events were not delivered to '{topic}'.");
        return sent;
    }

    /// <summary>Encodes events in the Confluent wire format under <paramref name="schemaId"/>, reusing one Avro writer.</summary>
    public static Func<PaymentEvent, byte[]> Encoder(RecordSchema schema, int schemaId)
    {
        var writer = new GenericDatumWriter<GenericRecord>(schema);
        var channelSchema = (EnumSchema)schema["channel"].Schema;
        return e => Encode(writer, schema, channelSchema, schemaId, e, false);
    }

    /// <summary>One event in the Confluent wire format under <paramref name="schemaId"/> (<paramref name="schema"/> = payment-event.avsc).</summary>
    public static byte[] Encode(RecordSchema schema, int schemaId, PaymentEvent e, bool dropKey = false) =>
        Encode(new GenericDatumWriter<GenericRecord>(schema), schema, (EnumSchema)schema["channel"].Schema, schemaId, e, dropKey);

    private static byte[] Encode(GenericDatumWriter<GenericRecord> writer, RecordSchema schema, EnumSchema channelSchema, int schemaId, PaymentEvent e, bool dropKey)
    {
        var record = new GenericRecord(schema);
        record.Add("event_id", e.EventId);
        record.Add("event_time", e.EventTime.UtcDateTime);
        record.Add("card_id", dropKey ? null : e.CardId);
        record.Add("merchant_id", e.MerchantId);
        record.Add("amount", e.Amount);
        record.Add("currency", e.Currency);
        record.Add("channel", new GenericEnum(channelSchema, e.Channel.ToString()));
        record.Add("country", e.Country);
        record.Add("is_foreign", e.IsForeign);
        return ConfluentWireFormat.Frame(writer, record, schemaId);
    }

    private static byte[] Reframe(byte[] value, int schemaId)
    {
        var copy = (byte[])value.Clone();
        ConfluentWireFormat.WriteHeader(copy, schemaId);
        return copy;
    }
}
