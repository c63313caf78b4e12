using System.Globalization;
using Confluent.Kafka;

namespace StreamInference.Infrastructure.Kafka;

/// <summary>How a partition's offset was found.</summary>
public enum OffsetSource { Beginning, End, Explicit, Broker, Search }

/// <summary>A resolved position in one partition.</summary>
public sealed record PartitionPosition(int Partition, long Offset, OffsetSource Source);

/// <summary>
/// Turns positions a person writes ("beginning", "now"/"end", an ISO-8601 time, or "0:1200,1:900")
/// into offsets per partition. A time becomes, per partition, the first offset whose record timestamp is
/// at or after it: the broker's ListOffsets-by-timestamp answer when it gives one that checks out against
/// the records around it, otherwise a binary search over fetched record timestamps (brokers without
/// ListOffsets by timestamp, such as the embedded Kafka-protocol cluster). Timestamps are assumed
/// non-decreasing within a partition (true for LogAppendTime; for CreateTime as far as producers keep it).
/// Uses its own consumer with <c>assign</c>: no group is joined, nothing is committed.
/// </summary>
public sealed class TopicOffsets : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly IConsumer<byte[]?, byte[]?> _consumer;
    private readonly string _topic;

    public TopicOffsets(string bootstrapServers, string topic)
    {
        _topic = topic;
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = $"streaminference-offsets-{Guid.NewGuid():N}",
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            ClientId = "streaminference-offsets",
            EnablePartitionEof = true,
            // Each probe fetches one record: answer fast rather than wait to fill a fetch.
            FetchWaitMaxMs = 10,
            FetchMinBytes = 1,
        }).Build();
        Partitions = PartitionsOf(_consumer, topic);
    }

    /// <summary>The topic's partition ids, ascending, from the metadata the client's brokers return; throws for a missing topic.</summary>
    public static int[] PartitionsOf(IClient client, string topic)
    {
        using var admin = new DependentAdminClientBuilder(client.Handle).Build();
        var metadata = admin.GetMetadata(topic, Timeout).Topics.FirstOrDefault(t => t.Topic == topic);
        if (metadata is null || metadata.Error.IsError || metadata.Partitions.Count == 0)
            throw new InvalidOperationException($"Topic '{topic}' does not exist or has no partitions ({metadata?.Error.Reason ?? "not in metadata"}).");
        return metadata.Partitions.Select(p => p.PartitionId).Order().ToArray();
    }

    public IReadOnlyList<int> Partitions { get; }

    /// <summary>Low and high watermark (first offset, next offset to be written) of a partition.</summary>
    public (long Low, long High) Watermarks(int partition)
    {
        var w = _consumer.QueryWatermarkOffsets(new TopicPartition(_topic, partition), Timeout);
        return (w.Low.Value, w.High.Value);
    }

    /// <summary>Resolves a position for every partition.</summary>
    public IReadOnlyList<PartitionPosition> Resolve(string position)
    {
        var text = position.Trim();
        if (text.Equals("beginning", StringComparison.OrdinalIgnoreCase))
            return Partitions.Select(p => new PartitionPosition(p, Watermarks(p).Low, OffsetSource.Beginning)).ToArray();
        if (text.Equals("now", StringComparison.OrdinalIgnoreCase) || text.Equals("end", StringComparison.OrdinalIgnoreCase))
            return Partitions.Select(p => new PartitionPosition(p, Watermarks(p).High, OffsetSource.End)).ToArray();
        if (text.Contains(':') && !text.Contains('T') && TryParseOffsets(text, out var explicitOffsets))
        {
            var unknown = explicitOffsets.Keys.Where(p => !Partitions.Contains(p)).ToArray();
            if (unknown.Length > 0) throw new ArgumentException($"Topic '{_topic}' has no partition(s) {string.Join(", ", unknown)}.");
            return Partitions.Select(p =>
            {
                var (low, high) = Watermarks(p);
                var o = explicitOffsets.TryGetValue(p, out var v) ? Math.Clamp(v, low, high) : high;
                return new PartitionPosition(p, o, OffsetSource.Explicit);
            }).ToArray();
        }
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time))
            return ForTime(time);
        throw new ArgumentException($"'{position}' is not a position: use beginning, now, an ISO-8601 time (2026-03-01T12:00:00Z) or partition:offset pairs (0:1200,1:900).");
    }

    /// <summary>Per partition, the first offset whose record timestamp is at or after <paramref name="time"/> (the end offset if none).</summary>
    public IReadOnlyList<PartitionPosition> ForTime(DateTimeOffset time)
    {
        var ms = time.ToUnixTimeMilliseconds();
        List<TopicPartitionOffset>? answers = null;
        try
        {
            answers = _consumer.OffsetsForTimes(
                Partitions.Select(p => new TopicPartitionTimestamp(new TopicPartition(_topic, p), new Timestamp(ms, TimestampType.CreateTime))).ToList(),
                Timeout);
        }
        catch (KafkaException)
        {
            // Not supported (or failed): every partition is searched.
        }
        var result = new List<PartitionPosition>();
        foreach (var p in Partitions)
        {
            var (low, high) = Watermarks(p);
            var answer = answers?.FirstOrDefault(a => a.Partition.Value == p);
            if (answer is not null && answer.Offset.Value >= 0 && IsFirstAtOrAfter(p, answer.Offset.Value, ms, low, high))
                result.Add(new PartitionPosition(p, answer.Offset.Value, OffsetSource.Broker));
            else
                result.Add(new PartitionPosition(p, Search(p, ms, low, high), OffsetSource.Search));
        }
        return result;
    }

    private bool IsFirstAtOrAfter(int partition, long offset, long ms, long low, long high)
    {
        if (offset > high || offset < low) return false;
        if (offset < high && (TimestampAt(partition, offset) is not { } at || at < ms)) return false;
        return offset == low || (TimestampAt(partition, offset - 1) is { } before && before < ms);
    }

    /// <summary>Binary search for the first offset in [low, high) with timestamp ≥ ms; high when there is none.</summary>
    private long Search(int partition, long ms, long low, long high)
    {
        long lo = low, hi = high;
        while (lo < hi)
        {
            var mid = lo + (hi - lo) / 2;
            var ts = TimestampAt(partition, mid);
            // Nothing readable from mid on (markers, compacted records): the answer lies below mid, or is mid.
            if (ts is null || ts.Value >= ms) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }

    /// <summary>Timestamp of the first record at or after <paramref name="offset"/> (records may be compacted away); null at the end.</summary>
    private long? TimestampAt(int partition, long offset)
    {
        var tp = new TopicPartition(_topic, partition);
        _consumer.Assign(new TopicPartitionOffset(tp, offset));
        try
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (DateTime.UtcNow < deadline)
            {
                var r = _consumer.Consume(TimeSpan.FromMilliseconds(500));
                if (r is null) continue;
                if (r.IsPartitionEOF) return null;
                return r.Message.Timestamp.UnixTimestampMs;
            }
            throw new TimeoutException($"No answer from {_topic}[{partition}] at offset {offset} within {Timeout.TotalSeconds:N0} s.");
        }
        finally
        {
            _consumer.Assign(Array.Empty<TopicPartitionOffset>());
        }
    }

    private static bool TryParseOffsets(string text, out Dictionary<int, long> offsets)
    {
        offsets = [];
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var colon = part.IndexOf(':');
            if (colon <= 0 || !int.TryParse(part.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var p)
                || !long.TryParse(part.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var o))
                return false;
            offsets[p] = o;
        }
        return offsets.Count > 0;
    }

    public void Dispose()
    {
        _consumer.Close();
        _consumer.Dispose();
    }
}
