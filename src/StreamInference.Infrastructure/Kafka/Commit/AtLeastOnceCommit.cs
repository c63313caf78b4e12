using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Kafka.Commit;

/// <summary>
/// At-least-once (the default): each partition's offset is stored up to its contiguous watermark of
/// completed records and librdkafka's auto-commit commits what was stored; a revoke commits the watermark
/// at once. A crash re-processes at most the in-flight window.
/// </summary>
public sealed class AtLeastOnceCommit(IProducer<byte[], byte[]> producer, ILogger log) : ICommitStrategy
{
    private readonly OwnedPartitions _owned = new();
    private IConsumer<byte[], byte[]>? _consumer;

    public PipelineFatalException? Failure => null;
    public bool CommitsWithPublishedOutputs => false;

    public ConsumerConfig ConsumerConfig(ConsumerConfig processorConfig)
    {
        var config = KafkaConfigs.Copy(processorConfig);
        config.EnableAutoOffsetStore = false;
        config.EnableAutoCommit ??= true;
        return config;
    }

    public void Bind(IConsumer<byte[], byte[]> consumer) => _consumer = consumer;

    public void Assigned(IReadOnlyCollection<PartitionOffsets> partitions) => _owned.Add(partitions);

    public void CommitCompleted()
    {
        foreach (var p in _owned.All)
        {
            if (!p.TryTakeCommittable(out var next)) continue;
            try
            {
                _consumer!.StoreOffset(new TopicPartitionOffset(p.Topic, p.Partition, next));
            }
            catch (KafkaException e)
            {
                RuntimeLog.StoreFailed(log, p.Topic, p.Partition, next, e.Error.Reason);
            }
        }
    }

    public void Revoking(IReadOnlyCollection<PartitionOffsets> partitions)
    {
        var commits = new List<TopicPartitionOffset>();
        foreach (var p in partitions)
        {
            p.MarkRevoked();
            if (p.Committable >= 0) commits.Add(new TopicPartitionOffset(p.Topic, p.Partition, p.Committable));
        }
        _owned.Remove(partitions);
        KafkaConfigs.TryCommit(_consumer!, commits, log);
    }

    public void Lost(IReadOnlyCollection<PartitionOffsets> partitions)
    {
        foreach (var p in partitions) p.MarkRevoked();
        _owned.Remove(partitions);
    }

    public PublishScope BeginPublish() => default;

    public void PublishFailed(string why)
    {
        // Nothing to undo: the failed batch's offsets are never stored, so its records are consumed again.
    }

    public void Close(TimeSpan timeout)
    {
        // Serves the last delivery reports, so the final store covers everything that was acknowledged.
        producer.Flush(timeout);
        CommitCompleted();
    }

    public void Dispose()
    {
    }
}
