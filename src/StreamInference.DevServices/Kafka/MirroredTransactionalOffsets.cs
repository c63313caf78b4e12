using System.Collections.Concurrent;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Kafka.Commit;

namespace StreamInference.DevServices.Kafka;

/// <summary>
/// Exactly-once against the embedded cluster only: librdkafka's mock cluster accepts a transaction's
/// offsets (TxnOffsetCommit) without storing them as the group's committed offsets, so a restarted
/// processor would start over from the beginning. This decorator also commits, through the consumer,
/// what each committed transaction carried. Never against a real broker, where such commits would race
/// with the transactional ones: it exists only in the dev services (see <see cref="Decorate"/>).
/// </summary>
public sealed class MirroredTransactionalOffsets : ICommitStrategy
{
    private readonly TransactionalCommit _inner;
    private readonly ILogger _log;
    // Per assignment (a PartitionOffsets lives as long as its assignment), so a partition that comes back
    // never starts from a previous owner's value.
    private readonly ConcurrentDictionary<PartitionOffsets, long> _carried = new();
    private readonly Dictionary<PartitionOffsets, long> _stored = [];
    private IConsumer<byte[], byte[]>? _consumer;

    private MirroredTransactionalOffsets(TransactionalCommit inner, ILogger log)
    {
        _inner = inner;
        _log = log;
        inner.Committed += carried =>
        {
            foreach (var (p, next) in carried) _carried[p] = next;
        };
    }

    /// <summary>The decoration for <see cref="DeliveryMode.Create"/>: exactly-once strategies get the mirror, others stay as they are.</summary>
    public static Func<ICommitStrategy, ICommitStrategy> Decorate(ILogger log) =>
        commit => commit is TransactionalCommit transactional ? new MirroredTransactionalOffsets(transactional, log) : commit;

    public PipelineFatalException? Failure => _inner.Failure;
    public bool CommitsWithPublishedOutputs => _inner.CommitsWithPublishedOutputs;

    public ConsumerConfig ConsumerConfig(ConsumerConfig processorConfig)
    {
        var config = _inner.ConsumerConfig(processorConfig);
        config.EnableAutoCommit = true;
        return config;
    }

    public void Bind(IConsumer<byte[], byte[]> consumer)
    {
        _consumer = consumer;
        _inner.Bind(consumer);
    }

    public void Assigned(IReadOnlyCollection<PartitionOffsets> partitions) => _inner.Assigned(partitions);

    public void CommitCompleted()
    {
        _inner.CommitCompleted();
        foreach (var (p, next) in _carried)
        {
            if (_stored.TryGetValue(p, out var stored) && stored >= next) continue;
            _stored[p] = next;
            try
            {
                _consumer!.StoreOffset(new TopicPartitionOffset(p.Topic, p.Partition, next));
            }
            catch (KafkaException e) when (e.Error.Code == ErrorCode.Local_State)
            {
                // Not assigned any more: its revoke committed what it carried.
            }
            catch (KafkaException e)
            {
                _log.LogWarning("Could not store the mirrored offset {Offset} of {Topic}[{Partition}]: {Reason}", next, p.Topic, p.Partition, e.Error.Reason);
            }
        }
    }

    public void Revoking(IReadOnlyCollection<PartitionOffsets> partitions)
    {
        _inner.Revoking(partitions);
        var commits = new List<TopicPartitionOffset>();
        foreach (var p in partitions)
        {
            if (_carried.TryRemove(p, out var next)) commits.Add(new TopicPartitionOffset(p.Topic, p.Partition, next));
            _stored.Remove(p);
        }
        KafkaConfigs.TryCommit(_consumer!, commits, _log);
    }

    public void Lost(IReadOnlyCollection<PartitionOffsets> partitions)
    {
        _inner.Lost(partitions);
        foreach (var p in partitions)
        {
            _carried.TryRemove(p, out _);
            _stored.Remove(p);
        }
    }

    public PublishScope BeginPublish() => _inner.BeginPublish();

    public void PublishFailed(string why) => _inner.PublishFailed(why);

    public void Close(TimeSpan timeout)
    {
        _inner.Close(timeout);
        CommitCompleted();
    }

    public void Dispose() => _inner.Dispose();
}
