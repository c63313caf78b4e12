using Confluent.Kafka;
using Polly;
using Microsoft.Extensions.Logging;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;

using StreamInference.Core.Resilience;

namespace StreamInference.Infrastructure.Kafka.Commit;

/// <summary>
/// Exactly-once (the commit strategy of Kafka:Delivery=ExactlyOnce): the predictions and dead letters of every batch published since the last commit,
/// and the input offsets they account for, are committed in one Kafka transaction, so a
/// <c>read_committed</c> consumer downstream sees each input's outcome exactly once.
/// </summary>
/// <remarks>
/// <para>The sink produces under <see cref="BeginPublish"/>; a commit (every
/// <c>Kafka:TransactionCommitIntervalMs</c>, on revoke and on shutdown) takes the same gate, flushes,
/// sends each owned partition's contiguous watermark with the consumer's group metadata and commits.
/// Batches are published in consume order by one stage, so after the flush each partition's watermark
/// is exactly the published prefix: offsets and outputs agree.</para>
/// <para>Anything that leaves a transaction in doubt (an abortable or fatal transactional error, lost
/// partitions) aborts it and fails the pipeline with a restartable error: the processor restarts from
/// the committed offsets and the aborted outputs stay invisible to read_committed consumers.</para>
/// </remarks>
public sealed class TransactionalCommit : ICommitStrategy
{
    private readonly IProducer<byte[], byte[]> _producer;
    private readonly ILogger _log;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _socketTimeout;
    private readonly Lock _gate = new();
    private readonly Timer _timer;
    private readonly OwnedPartitions _owned = new();
    private IConsumer<byte[], byte[]>? _consumer;
    private readonly ResiliencePipeline _retriable;
    private bool _open;
    private volatile string? _call;
    private long _callStarted;
    private int _wedgedReported;
    private volatile PipelineFatalException? _failure;

    /// <param name="socketTimeout">The producer's socket.timeout.ms: a request lost to a broker that went down is only retried after it.</param>
    public TransactionalCommit(IProducer<byte[], byte[]> producer, ILogger log, TimeSpan commitInterval, TimeSpan timeout, TimeSpan socketTimeout)
    {
        _socketTimeout = socketTimeout;
        _producer = producer;
        _log = log;
        _timeout = timeout;
        // A transactional call that failed with a retriable error is retried while the commit's deadline allows.
        _retriable = Policies.Retry(Backoffs.TransactionCall, e => e is KafkaRetriableException && Environment.TickCount64 < _deadline,
            onRetry: (e, attempt, _) => RuntimeLog.Retrying(_log, ((KafkaException)e).Error.Code.ToString(), ((KafkaException)e).Error.Reason, attempt));
        _producer.InitTransactions(timeout);
        _timer = new Timer(_ => CommitFromTimer(), null, commitInterval, commitInterval);
    }

    /// <summary>Transactions committed so far.</summary>
    public long Commits => Interlocked.Read(ref _commits);
    private long _commits;

    /// <summary>Set when a transaction had to be aborted; the pipeline must restart from the committed offsets.</summary>
    public PipelineFatalException? Failure => _failure;
    public bool CommitsWithPublishedOutputs => true;

    public ConsumerConfig ConsumerConfig(ConsumerConfig processorConfig)
    {
        var config = KafkaConfigs.Copy(processorConfig);
        config.EnableAutoOffsetStore = false;
        config.IsolationLevel = IsolationLevel.ReadCommitted;
        // Offsets travel in the transactions; regular commits would race with them on a broker.
        config.EnableAutoCommit = false;
        return config;
    }

    /// <summary>The consumer's group metadata goes with every transaction's offsets (zombie fencing).</summary>
    public void Bind(IConsumer<byte[], byte[]> consumer) => _consumer = consumer;

    public void Assigned(IReadOnlyCollection<PartitionOffsets> partitions) => _owned.Add(partitions);

    public void CommitCompleted()
    {
        // The timer commits; the consume loop only learns here that a transaction had to be aborted.
        if (_failure is { } failure) throw failure;
    }

    /// <summary>Commits what was published, with these partitions' offsets, and marks them revoked under the gate.</summary>
    public void Revoking(IReadOnlyCollection<PartitionOffsets> partitions)
    {
        Commit(partitions);
        _owned.Remove(partitions);
    }

    /// <summary>The open transaction may hold outputs of these partitions, whose offsets we can no longer commit: abort it and restart.</summary>
    public void Lost(IReadOnlyCollection<PartitionOffsets> partitions)
    {
        foreach (var p in partitions) p.MarkRevoked();
        _owned.Remove(partitions);
        Abort($"{partitions.Count} partition(s) lost");
    }

    /// <summary>Holds the gate for producing one batch inside the open transaction (begun if none is).</summary>
    public PublishScope BeginPublish()
    {
        _gate.Enter();
        try
        {
            if (_failure is { } f) throw f;
            if (!_open) Begin();
            return new PublishScope(_gate);
        }
        catch
        {
            _gate.Exit();
            throw;
        }
    }

    private void Begin()
    {
        try
        {
            Call("begin transaction");
            _producer.BeginTransaction();
        }
        catch (KafkaException e)
        {
            throw _failure ??= new PipelineFatalException($"Could not begin a transaction ({e.Error.Code}: {e.Error.Reason})", e, restartable: !e.Error.IsFatal);
        }
        finally
        {
            Call(null);
        }
        _open = true;
    }

    /// <summary>Part of the batch may already be in the open transaction: abort it, or committing it later would publish those rows again after the restart.</summary>
    public void PublishFailed(string why) => Abort(why);

    /// <summary>The final commit; the producer is flushed by it.</summary>
    public void Close(TimeSpan timeout) => Commit();

    /// <summary>Raised with the offsets each transaction carried, once it committed (the dev services' offset mirror listens).</summary>
    public event Action<IReadOnlyList<(PartitionOffsets Partition, long Next)>>? Committed;

    /// <summary>
    /// Commits the open transaction with the offsets of everything published so far. <paramref name="revoking"/>
    /// partitions are marked revoked under the gate after the commit, so none of their records is
    /// published afterwards. Returns false (and records <see cref="Failure"/>) when the transaction was aborted.
    /// </summary>
    public bool Commit(IReadOnlyCollection<PartitionOffsets>? revoking = null)
    {
        lock (_gate)
        {
            try
            {
                if (_failure is not null) return false;
                if (!_open) return true;
                CommitOpen();
                return true;
            }
            finally
            {
                if (revoking is not null)
                {
                    foreach (var p in revoking) p.MarkRevoked();
                }
            }
        }
    }

    /// <summary>Aborts the open transaction (lost partitions: their offsets can no longer be committed by us).</summary>
    public void Abort(string why)
    {
        lock (_gate)
        {
            if (_open) TryAbort();
            _failure ??= new PipelineFatalException($"Transaction aborted: {why}", restartable: true);
        }
    }

    private void CommitOpen()
    {
        // Everything below is bounded by one transaction timeout: a commit that cannot finish in time
        // (brokers gone longer than that) aborts, and the processor restarts from the committed offsets.
        var deadline = Environment.TickCount64 + (long)_timeout.TotalMilliseconds;
        try
        {
            // Serves every delivery report, so each partition's watermark covers what was published.
            var step = Environment.TickCount64;
            Call("flush");
            if (_producer.Flush(_timeout) > 0)
            {
                RuntimeLog.FlushSlow(_log, _timeout.TotalSeconds);
                TryAbort();
                _failure ??= new PipelineFatalException($"Transaction aborted: outputs not acknowledged within {_timeout.TotalSeconds} s", restartable: true);
                return;
            }
            var offsets = new List<TopicPartitionOffset>();
            var carried = new List<(PartitionOffsets Partition, long Next)>();
            foreach (var p in _owned.All)
            {
                var next = p.Committable;
                if (next < 0) continue;
                offsets.Add(new TopicPartitionOffset(p.Topic, p.Partition, next));
                carried.Add((p, next));
            }
            Slow("flush", ref step);
            if (offsets.Count > 0 && _consumer is not null)
            {
                var metadata = _consumer.ConsumerGroupMetadata;
                Call("send offsets to transaction");
                RetryRetriable(() => _producer.SendOffsetsToTransaction(offsets, metadata, Remaining(deadline)), deadline);
            }
            Slow("send offsets", ref step);
            Call("commit transaction");
            RetryRetriable(() => _producer.CommitTransaction(Remaining(deadline)), deadline);
            Slow("commit", ref step);
            Call(null);
            _open = false;
            Interlocked.Increment(ref _commits);
            if (carried.Count > 0) Committed?.Invoke(carried);
        }
        catch (KafkaTxnRequiresAbortException e)
        {
            TryAbort();
            _failure ??= new PipelineFatalException($"Transaction aborted ({e.Error.Code}: {e.Error.Reason}); restarting from the committed offsets", e, restartable: true);
        }
        catch (KafkaException e)
        {
            // Fatal (e.g. fenced by a newer instance with the same transactional id) or a timeout that
            // left the transaction in doubt: this producer cannot go on.
            _open = false;
            _failure ??= new PipelineFatalException($"Transactional producer failed ({e.Error.Code}: {e.Error.Reason})", e, restartable: !e.Error.IsFatal);
        }
        finally
        {
            Call(null);
        }
    }

    /// <summary>
    /// Called (once) when a transactional call of the Kafka client has not returned long after its own
    /// timeout. Every call here is bounded by <c>TransactionTimeoutMs</c>, but librdkafka waits without
    /// bound for some internal replies (seen: send_offsets_to_transaction after every broker of the
    /// embedded cluster went down and up). The producer is then wedged: the processor sets this to log
    /// and end the process, so the orchestrator restarts it and the broker aborts the open transaction.
    /// </summary>
    public Action<string>? Wedged { get; init; }

    private void Call(string? what)
    {
        Interlocked.Exchange(ref _callStarted, what is null ? 0 : Environment.TickCount64);
        _call = what;
    }

    private void CheckWedged()
    {
        var started = Interlocked.Read(ref _callStarted);
        if (started == 0 || _call is not { } call) return;
        var seconds = (Environment.TickCount64 - started) / 1000.0;
        if (seconds < 2 * _timeout.TotalSeconds + _socketTimeout.TotalSeconds + 5 || Interlocked.Exchange(ref _wedgedReported, 1) == 1) return;
        Wedged?.Invoke($"the Kafka client's {call} has not returned for {seconds:0} s (its timeout is {_timeout.TotalSeconds:0} s)");
    }

    private void Slow(string what, ref long since)
    {
        var now = Environment.TickCount64;
        if (now - since > 2000) RuntimeLog.SlowStep(_log, what, (now - since) / 1000.0);
        since = now;
    }

    private static TimeSpan Remaining(long deadline) => TimeSpan.FromMilliseconds(Math.Max(1, deadline - Environment.TickCount64));

    private void RetryRetriable(Action call, long deadline)
    {
        _deadline = deadline;
        try
        {
            _retriable.Execute(static c => c(), call);
        }
        catch (KafkaRetriableException e)
        {
            // Out of time: the transaction is in doubt; abort it.
            throw new KafkaTxnRequiresAbortException(e.Error);
        }
    }

    // The running commit's deadline (commits are serialized by the gate).
    private long _deadline;

    private void TryAbort()
    {
        Call("abort transaction");
        try
        {
            _producer.AbortTransaction(_timeout);
        }
        catch (KafkaException e)
        {
            RuntimeLog.AbortFailed(_log, e.Error.Code.ToString(), e.Error.Reason);
        }
        Call(null);
        _open = false;
    }

    private void CommitFromTimer()
    {
        CheckWedged();
        if (!_gate.TryEnter()) return; // a batch is being produced or a commit runs: next tick
        try
        {
            if (_open && _failure is null) CommitOpen();
        }
        catch (Exception e)
        {
            _failure ??= new PipelineFatalException($"Transaction commit failed: {e.Message}", e, restartable: true);
        }
        finally
        {
            _gate.Exit();
        }
    }

    public void Dispose()
    {
        _timer.Dispose();
        lock (_gate)
        {
            if (_open) TryAbort();
        }
    }
}
