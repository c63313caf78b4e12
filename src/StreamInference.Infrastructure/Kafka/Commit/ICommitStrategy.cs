using Confluent.Kafka;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Kafka.Commit;

/// <summary>
/// The commit step, last in the chain: it owns offset completion for the partitions this process is
/// assigned. The consume loop tells it about assignments and asks it, between polls, to make completed
/// offsets durable; the sink produces each batch inside its publish scope. How offsets become durable —
/// stored behind each partition's contiguous watermark and auto-committed (<see cref="AtLeastOnceCommit"/>),
/// or sent inside a Kafka transaction with the outputs (<see cref="TransactionalCommit"/>) — is the
/// strategy's alone; neither the loop nor the sink knows which one runs.
/// </summary>
/// <remarks>
/// When a record is complete is decided upstream of the strategy: the pipeline completes a record's
/// sequence in its <see cref="PartitionOffsets"/> once its batch's completion (see
/// <see cref="EventBatch.Completion"/>) has every acknowledgement it waits for. A strategy only reads the
/// watermark, so a further completion condition needs no change here or in the consume loop.
/// </remarks>
public interface ICommitStrategy : IDisposable
{
    /// <summary>The consumer settings this strategy needs (isolation level, auto-commit), on a copy of <paramref name="processorConfig"/>.</summary>
    ConsumerConfig ConsumerConfig(ConsumerConfig processorConfig);

    /// <summary>Called once, on the consume thread, after the consumer was built and before it subscribes.</summary>
    void Bind(IConsumer<byte[], byte[]> consumer);

    /// <summary>New partitions (consume thread, inside the rebalance callback).</summary>
    void Assigned(IReadOnlyCollection<PartitionOffsets> partitions);

    /// <summary>
    /// Partitions being revoked, after their in-flight records were given their bounded time: commit what
    /// completed. When this returns they are marked revoked, so nothing of theirs is published afterwards.
    /// </summary>
    void Revoking(IReadOnlyCollection<PartitionOffsets> partitions);

    /// <summary>Partitions lost without a revoke (session timeout): their offsets can no longer be committed by this process.</summary>
    void Lost(IReadOnlyCollection<PartitionOffsets> partitions);

    /// <summary>Consume thread, between polls: make what completed durable. Throws <see cref="Failure"/> once set.</summary>
    void CommitCompleted();

    /// <summary>The sink holds this while it produces one batch.</summary>
    PublishScope BeginPublish();

    /// <summary>The sink could not publish a batch: nothing it produced under the scope may become visible.</summary>
    void PublishFailed(string why);

    /// <summary>Shutdown, after the pipeline drained: the last commit; <paramref name="timeout"/> is what is left of the shutdown bound.</summary>
    void Close(TimeSpan timeout);

    /// <summary>Set when the run must end (e.g. an aborted transaction); <see cref="PipelineFatalException.Restartable"/> says whether a restart helps.</summary>
    PipelineFatalException? Failure { get; }

    /// <summary>
    /// True when the strategy commits, with the outputs published so far, the watermarks as they stand at that
    /// moment (a transaction): a batch's records must then complete as soon as its outputs are delivered, so the
    /// pipeline settles the batch's feature-state write before it publishes (no write-behind past the publish).
    /// </summary>
    bool CommitsWithPublishedOutputs { get; }
}

/// <summary>Held by the sink while it produces one batch; disposing it ends the scope. The default scope holds nothing.</summary>
public readonly struct PublishScope(Lock? gate) : IDisposable
{
    public void Dispose() => gate?.Exit();
}

/// <summary>The partitions a strategy currently owns: copied on change (rebalances), read lock-free from any thread.</summary>
internal sealed class OwnedPartitions
{
    private volatile PartitionOffsets[] _all = [];

    public PartitionOffsets[] All => _all;

    public void Add(IReadOnlyCollection<PartitionOffsets> partitions) => _all = [.. _all.Union(partitions)];

    public void Remove(IReadOnlyCollection<PartitionOffsets> partitions) => _all = [.. _all.Except(partitions)];
}
