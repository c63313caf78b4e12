using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Kafka;

/// <summary>
/// Exactly-once mode: the predictions and dead letters of every batch published since the last commit,
/// and the input offsets they account for, are committed in one Kafka transaction, so a
/// <c>read_committed</c> consumer downstream sees each input's outcome exactly once.
/// </summary>
/// <remarks>
/// <para>The score stage produces under <see cref="Enter"/>; a commit (every
/// <c>Kafka:TransactionCommitIntervalMs</c>, on revoke and on shutdown) takes the same gate, flushes,
/// sends each owned partition's contiguous watermark with the consumer's group metadata and commits.
/// Batches are published in consume order by one stage, so after the flush each partition's watermark
/// is exactly the published prefix: offsets and outputs agree.</para>
/// <para>Anything that leaves a transaction in doubt (an abortable or fatal transactional error, lost
/// partitions) aborts it and fails the pipeline with a restartable error: the processor restarts from
/// the committed offsets and the aborted outputs stay invisible to read_committed consumers.</para>
/// </remarks>
public sealed partial class KafkaTransactions : IDisposable
{
    private readonly IProducer<byte[], byte[]> _producer;
    private readonly ILogger _log;
    private readonly TimeSpan _timeout;
    private readonly Lock _gate = new();
    private readonly Timer _timer;
    private Func<IReadOnlyList<PartitionOffsets>>? _owned;
    private Func<IConsumerGroupMetadata>? _groupMetadata;
    private bool _open;
    private readonly Dictionary<TopicPartition, long> _committed = [];
    private volatile PipelineFatalException? _failure;

    public KafkaTransactions(IProducer<byte[], byte[]> producer, ILogger log, TimeSpan commitInterval, TimeSpan timeout)
    {
        _producer = producer;
        _log = log;
        _timeout = timeout;
        _producer.InitTransactions(timeout);
        _timer = new Timer(_ => CommitFromTimer(), null, commitInterval, commitInterval);
    }

    /// <summary>Transactions committed so far.</summary>
    public long Commits => Interlocked.Read(ref _commits);
    private long _commits;

    /// <summary>Set when a transaction had to be aborted; the pipeline must restart from the committed offsets.</summary>
    public PipelineFatalException? Failure => _failure;

    /// <summary>Wires the consumer side: the partitions it owns and its group metadata (for zombie fencing).</summary>
    public void Attach(Func<IReadOnlyList<PartitionOffsets>> owned, Func<IConsumerGroupMetadata> groupMetadata)
    {
        _owned = owned;
        _groupMetadata = groupMetadata;
    }

    /// <summary>Holds the gate for producing one batch inside the open transaction (begun if none is).</summary>
    public Scope Enter()
    {
        _gate.Enter();
        try
        {
            if (_failure is { } f) throw f;
            if (!_open)
            {
                _producer.BeginTransaction();
                _open = true;
            }
            return new Scope(this);
        }
        catch
        {
            _gate.Exit();
            throw;
        }
    }

    public readonly struct Scope(KafkaTransactions owner) : IDisposable
    {
        public void Dispose() => owner._gate.Exit();
    }

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

    /// <summary>
    /// The offsets of <paramref name="partition"/> that a committed transaction carried. The consumer also
    /// stores them for its regular offset commits: redundant where the broker persists transactional
    /// offset commits, and what keeps the group's position (and lag monitoring) right where it does not
    /// (librdkafka's embedded cluster accepts TxnOffsetCommit without storing it).
    /// </summary>
    public bool TryGetCommitted(TopicPartition partition, out long offset)
    {
        lock (_committed) return _committed.TryGetValue(partition, out offset);
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
            if (_producer.Flush(_timeout) > 0)
            {
                Log.FlushSlow(_log, _timeout.TotalSeconds);
                TryAbort();
                _failure ??= new PipelineFatalException($"Transaction aborted: outputs not acknowledged within {_timeout.TotalSeconds} s", restartable: true);
                return;
            }
            var offsets = new List<TopicPartitionOffset>();
            foreach (var p in _owned?.Invoke() ?? [])
            {
                var next = p.Committable;
                if (next >= 0) offsets.Add(new TopicPartitionOffset(p.Topic, p.Partition, next));
            }
            if (offsets.Count > 0 && _groupMetadata is not null)
                RetryRetriable(() => _producer.SendOffsetsToTransaction(offsets, _groupMetadata(), Remaining(deadline)), deadline);
            RetryRetriable(() => _producer.CommitTransaction(Remaining(deadline)), deadline);
            _open = false;
            lock (_committed)
            {
                foreach (var o in offsets) _committed[o.TopicPartition] = o.Offset.Value;
            }
            Interlocked.Increment(ref _commits);
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
    }

    private static TimeSpan Remaining(long deadline) => TimeSpan.FromMilliseconds(Math.Max(1, deadline - Environment.TickCount64));

    private void RetryRetriable(Action call, long deadline)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                call();
                return;
            }
            catch (KafkaRetriableException e) when (Environment.TickCount64 < deadline)
            {
                Log.Retrying(_log, e.Error.Code.ToString(), e.Error.Reason, attempt);
                Thread.Sleep(Math.Min(100 * attempt, 1000));
            }
            catch (KafkaRetriableException e)
            {
                // Out of time: the transaction is in doubt; abort it.
                throw new KafkaTxnRequiresAbortException(e.Error);
            }
        }
    }

    private void TryAbort()
    {
        try
        {
            _producer.AbortTransaction(_timeout);
        }
        catch (KafkaException e)
        {
            Log.AbortFailed(_log, e.Error.Code.ToString(), e.Error.Reason);
        }
        _open = false;
    }

    private void CommitFromTimer()
    {
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

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Warning, Message = "Transaction outputs not acknowledged within {Seconds}s; aborting")]
        public static partial void FlushSlow(ILogger logger, double seconds);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Transactional call failed with retriable {Code}: {Reason} (attempt {Attempt})")]
        public static partial void Retrying(ILogger logger, string code, string reason, int attempt);

        [LoggerMessage(Level = LogLevel.Error, Message = "Aborting the transaction failed ({Code}: {Reason})")]
        public static partial void AbortFailed(ILogger logger, string code, string reason);
    }
}
