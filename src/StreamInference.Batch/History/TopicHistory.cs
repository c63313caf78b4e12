using Confluent.Kafka;
using StreamInference.Core.Features;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Kafka;
using AvroSchema = Avro.Schema;

namespace StreamInference.Batch.History;

public sealed record TopicHistoryResult(EventHistory History, long Records, long DeadLettered, long Labelled);

/// <summary>
/// Reads a topic from its beginning to the end offsets it had when reading started, decoding every
/// record with the streaming path's <see cref="AvroEventDecoder"/> (so a record the stream would
/// dead-letter is skipped here too). Records keep their partition order, which is the arrival order
/// per entity. Labels, which live events do not carry, are joined by event id.
/// </summary>
public static class TopicHistory
{
    public static async Task<TopicHistoryResult> ReadAsync(
        string bootstrapServers, string topic, IAvroSchemaRegistry registry, AvroSchema readerSchema, FeaturePlan plan,
        IReadOnlyDictionary<string, double>? labels, IProgress<(long Done, long Total)>? progress = null, CancellationToken ct = default,
        IReadOnlyDictionary<int, (long Start, long End)>? ranges = null, EventHistory? prior = null)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = $"streaminference-backfill-{Guid.NewGuid():N}",
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            // The end offset may never be delivered as a record (a transaction marker, a compacted
            // record, an open transaction): reaching the end of a partition also finishes it.
            EnablePartitionEof = true,
        }).Build();
        var partitions = TopicOffsets.PartitionsOf(consumer, topic);

        var ends = new Dictionary<int, long>();
        var assignment = new List<TopicPartitionOffset>();
        // Read from history: source partitions, no offset tracking (nothing is committed).
        var trackers = new Dictionary<int, SourcePartition>();
        long total = 0;
        foreach (var partitionId in partitions)
        {
            var tp = new TopicPartition(topic, partitionId);
            var w = consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10));
            var (start, end) = (w.Low.Value, w.High.Value);
            if (ranges is not null)
            {
                if (!ranges.TryGetValue(partitionId, out var range)) continue;
                (start, end) = (Math.Max(start, range.Start), Math.Min(end, range.End));
            }
            if (end <= start) continue;
            ends[partitionId] = end;
            total += end - start;
            assignment.Add(new TopicPartitionOffset(tp, start));
            trackers[partitionId] = new SourcePartition(topic, partitionId);
        }
        // A prior history (events before the topic's, e.g. what a warm start materialized) comes first: the topic's events are appended to it.
        var history = prior ?? new EventHistory(plan);
        if (assignment.Count == 0) return new TopicHistoryResult(history, 0, 0, 0);
        consumer.Assign(assignment);

        var decoder = new AvroEventDecoder(registry, readerSchema, plan);
        var batch = new EventBatch(plan, 1024, 1);
        var batchOnly = new double[plan.BatchOnlyFields.Count];
        Array.Fill(batchOnly, double.NaN);
        long records = 0, dead = 0, labelled = 0;
        while (ends.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            batch.Reset();
            while (batch.Count < batch.Capacity && ends.Count > 0)
            {
                var r = consumer.Consume(batch.Count == 0 ? TimeSpan.FromSeconds(1) : TimeSpan.Zero);
                if (r is null) break;
                var partition = r.Partition.Value;
                if (r.IsPartitionEOF)
                {
                    if (ends.Remove(partition)) consumer.IncrementalUnassign([r.TopicPartition]);
                    continue;
                }
                if (!ends.TryGetValue(partition, out var end)) continue;
                if (r.Offset.Value >= end)
                {
                    // Past the end (the last offset was a marker or compacted away): this partition is done.
                    ends.Remove(partition);
                    consumer.IncrementalUnassign([r.TopicPartition]);
                    continue;
                }
                batch.Records[batch.Count++] = new InputRecord(trackers[partition], 0, r.Offset.Value, r.Message.Key, r.Message.Value,
                    r.Message.Timestamp.UnixTimestampMs, null);
                if (r.Offset.Value + 1 >= end)
                {
                    ends.Remove(partition);
                    consumer.IncrementalUnassign([r.TopicPartition]);
                }
            }
            if (batch.Count == 0) continue;
            await decoder.DecodeAsync(batch, ct).ConfigureAwait(false);
            for (var row = 0; row < batch.Count; row++)
            {
                records++;
                if (batch.DeadLetterReasons[row] is not null) { dead++; continue; }
                var id = batch.EventIds[row]!;
                var label = labels is not null && labels.TryGetValue(id, out var l) ? l : double.NaN;
                if (double.IsFinite(label)) labelled++;
                var record = batch.Records[row];
                history.Add(id, batch.EventTimesMs[row], batch.NumericRow(row), batch.TextRow(row), label, batchOnly,
                    record.Partition.Partition, record.Offset);
            }
            progress?.Report((records, total));
        }
        consumer.Close();
        return new TopicHistoryResult(history, records, dead, labelled);
    }
}
