namespace StreamInference.Core.Offsets;

/// <summary>
/// Where records came from: a topic partition. The consume loop's records carry a
/// <see cref="PartitionOffsets"/> (this plus watermark tracking, per assignment); readers of history
/// (replay, backfill from a topic) carry a plain <see cref="SourcePartition"/>: their records complete nothing.
/// </summary>
public class SourcePartition(string topic, int partition)
{
    public string Topic { get; } = topic;
    public int Partition { get; } = partition;

    /// <summary><c>topic/partition</c>, the source identity used for idempotent state updates.</summary>
    public string SourceId => _sourceId ??= $"{Topic}/{Partition}";
    private string? _sourceId;

    /// <summary>Set when this process no longer owns the partition: its records must not be published any more.</summary>
    public virtual bool IsRevoked => false;
}
