using System.Diagnostics;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamInference.Core.Offsets;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Kafka.Commit;
using StreamInference.Infrastructure.Metrics;
using System.Threading.Channels;

namespace StreamInference.Infrastructure.Kafka;

/// <summary>
/// The consume side: one dedicated thread blocks in <c>Consume</c>, tracks every record in its
/// partition's watermark, and hands it to the pipeline's input channel. When the channel is full it
/// stops reading until the record it holds back fits (librdkafka stops fetching at its own queue limits);
/// if the channel stays full longer than the pause threshold (a stall) it pauses every assigned partition,
/// so that it can keep serving the group protocol, and resumes once the held records fit again.
/// Memory stays bounded either way. What becomes of completed offsets is the commit strategy's business
/// (<see cref="ICommitStrategy"/>): this loop only tells it about assignments and gives it a turn between polls.
/// </summary>
public sealed class KafkaConsumerLoop : IDisposable
{
    private readonly IConsumer<byte[], byte[]> _consumer;
    private readonly IReadOnlyList<string> _topics;
    private readonly ChannelWriter<InputRecord> _input;
    private readonly ICommitStrategy _commit;
    private readonly ILogger _log;
    private readonly ProcessorMetrics _metrics;
    private readonly TimeSpan _revokeDrainTimeout;
    private readonly TimeSpan _pauseAfter;
    private readonly Dictionary<TopicPartition, PartitionOffsets> _partitions = [];
    private readonly Queue<InputRecord> _held = new();
    private bool _paused;
    private bool _pauseNewlyAssigned;
    private long _lastLagUpdate;
    // When the input queue was first found full (Stopwatch timestamp; 0 = not full).
    private long _fullSince;

    /// <param name="config">The processor's consumer settings; the commit strategy adjusts a copy.</param>
    /// <param name="input">The pipeline's input: <c>TryWrite</c> failing means full.</param>
    public KafkaConsumerLoop(ConsumerConfig config, IReadOnlyList<string> topics, ChannelWriter<InputRecord> input, ICommitStrategy commit,
        ProcessorMetrics metrics, ILogger log, TimeSpan revokeDrainTimeout, TimeSpan pauseAfter)
    {
        (_topics, _input, _commit, _metrics, _log) = (topics, input, commit, metrics, log);
        (_revokeDrainTimeout, _pauseAfter) = (revokeDrainTimeout, pauseAfter);
        _consumer = new ConsumerBuilder<byte[], byte[]>(commit.ConsumerConfig(config))
            .SetPartitionsAssignedHandler((_, list) => OnAssigned(list))
            .SetPartitionsRevokedHandler((_, list) => OnRevoked(list))
            .SetPartitionsLostHandler((_, list) => OnLost(list))
            .SetErrorHandler((_, e) => OnError(e))
            .SetLogHandler((_, m) => OnLog(m))
            .Build();
        commit.Bind(_consumer);
    }

    /// <summary>Called on the consume thread when partitions are assigned, before any of their records is handed over.</summary>
    public Action? PartitionsAssigned { get; init; }

    /// <summary>Partitions currently assigned to this process.</summary>
    public int AssignedPartitions => Volatile.Read(ref _assignedCount);
    private int _assignedCount;

    /// <summary>
    /// Runs the loop on a dedicated thread until <paramref name="stop"/> is cancelled or
    /// <paramref name="pipelineRun"/> ends, then drains the pipeline (up to <paramref name="drainTimeout"/>),
    /// stores the final offsets and closes the consumer (leaving the group, committing).
    /// </summary>
    public Task RunAsync(Task pipelineRun, TimeSpan drainTimeout, CancellationToken stop)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                Loop(pipelineRun, stop);
                Drain(pipelineRun, drainTimeout);
                if (_commit.Failure is { } failure) throw failure;
                done.TrySetResult();
            }
            catch (Exception e)
            {
                // Leave the group even on failure, or the member lingers until its session times out and
                // the next start (an in-process restart) waits for it.
                try
                {
                    Close();
                }
                catch (Exception closing)
                {
                    RuntimeLog.CommitFailed(_log, closing.Message);
                }
                finally
                {
                    done.TrySetException(e);
                }
            }
        })
        {
            IsBackground = true,
            Name = "kafka-consume",
        };
        thread.Start();
        return done.Task;
    }

    private void Loop(Task pipelineRun, CancellationToken stop)
    {
        _consumer.Subscribe(_topics);
        var input = _input;
        while (!stop.IsCancellationRequested && !pipelineRun.IsCompleted)
        {
            _commit.CommitCompleted();
            UpdateLagEvery(TimeSpan.FromMilliseconds(500));
            // A rebalance can take the held records away (revoked or lost partitions) while paused:
            // nothing would resume the partitions then.
            if (_paused && _held.Count == 0) Resume();

            if (_held.Count > 0 && !TryReleaseHeld(input))
            {
                // Full. Stop reading and wait for room: librdkafka keeps what it fetched ahead and stops
                // fetching at its own queue limits, so nothing is dropped and nothing is fetched twice.
                // Full for longer than PauseAfter means a stall (Redis or the model stuck): pause the
                // partitions, so that Consume can serve group callbacks (rebalances, max.poll.interval)
                // without returning records.
                if (!_paused && Stopwatch.GetElapsedTime(_fullSince) >= _pauseAfter) Pause();
                input.WaitToWriteAsync(CancellationToken.None).AsTask().Wait(_paused ? 50 : 5, CancellationToken.None);
                if (_paused) Accept(TryConsume(TimeSpan.Zero), input);
                continue;
            }
            Accept(TryConsume(TimeSpan.FromMilliseconds(100)), input);
        }
    }

    private ConsumeResult<byte[], byte[]>? TryConsume(TimeSpan timeout)
    {
        try
        {
            return _consumer.Consume(timeout);
        }
        catch (ConsumeException e)
        {
            if (e.Error.IsFatal) throw new PipelineFatalException($"Fatal Kafka consumer error: {e.Error}", e, restartable: true);
            RuntimeLog.ConsumeError(_log, e.Error.Code.ToString(), e.Error.Reason);
            return null;
        }
    }

    private void Accept(ConsumeResult<byte[], byte[]>? result, ChannelWriter<InputRecord> input)
    {
        if (_pauseNewlyAssigned)
        {
            _pauseNewlyAssigned = false;
            if (_paused) _consumer.Pause(_consumer.Assignment);
        }
        if (result is null || result.IsPartitionEOF) return;
        if (!_partitions.TryGetValue(result.TopicPartition, out var partition))
        {
            // A record of a partition we no longer own (revoked between fetch and return): drop it,
            // its new owner consumes it from the committed offset.
            return;
        }
        var offset = result.Offset.Value;
        var first = partition.Tracked == 0;
        if (!partition.TryTrack(offset, out var sequence))
        {
            // librdkafka can fetch a partition again from an older position (seen after pause/resume
            // while the first fetch of a new assignment was in progress): those records are in flight or
            // done here, so processing them again would only duplicate outputs.
            _metrics.RefetchedSkipped.Inc();
            return;
        }
        if (first) RuntimeLog.FirstRecord(_log, result.Topic, result.Partition.Value, offset);
        var record = new InputRecord(partition, sequence, offset, result.Message.Key, result.Message.Value,
            result.Message.Timestamp.UnixTimestampMs, result.Message.Headers is { Count: > 0 } headers ? new HeaderList(headers) : null);
        _metrics.Consumed.Inc();
        if (_held.Count == 0 && input.TryWrite(record)) return;
        if (_held.Count == 0)
        {
            _fullSince = Stopwatch.GetTimestamp();
            _metrics.Backpressured.Inc();
        }
        _held.Enqueue(record);
        if (!_paused && _pauseAfter <= TimeSpan.Zero) Pause();
    }

    private void Resume()
    {
        _consumer.Resume(_consumer.Assignment);
        _paused = false;
        _metrics.Paused.Set(0);
    }

    private void Pause()
    {
        _consumer.Pause(_consumer.Assignment);
        _paused = true;
        _metrics.Pauses.Inc();
        _metrics.Paused.Set(1);
    }

    private bool TryReleaseHeld(ChannelWriter<InputRecord> input)
    {
        while (_held.Count > 0)
        {
            if (!input.TryWrite(_held.Peek())) return false;
            _held.Dequeue();
        }
        if (_paused) Resume();
        return true;
    }

    private void UpdateLagEvery(TimeSpan interval)
    {
        var now = Environment.TickCount64;
        if (now - _lastLagUpdate < interval.TotalMilliseconds) return;
        _lastLagUpdate = now;
        long total = 0, highs = 0;
        var known = false;
        // While paused librdkafka fetches nothing, so the high watermarks it caches from fetch responses stop where
        // they were (librdkafka#4996): the lag would stop growing and the input rate read zero exactly while the backlog
        // grows. Then each is asked of the partition leader, within a budget per round; past it, the cached value serves.
        var queryUntil = _paused ? now + WatermarkQueryBudgetMs : 0;
        foreach (var tp in _partitions.Keys)
        {
            var watermarks = Environment.TickCount64 < queryUntil ? QueryWatermarks(tp) : _consumer.GetWatermarkOffsets(tp);
            if (watermarks.High.Value >= 0) highs += watermarks.High.Value;
            var position = _consumer.Position(tp);
            if (watermarks.High.Value < 0 || position.Value < 0) continue;
            var lag = Math.Max(0, watermarks.High.Value - position.Value);
            total += lag;
            known = true;
            _metrics.Lag.WithLabels(tp.Topic, tp.Partition.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)).Set(lag);
        }
        // What the fallback tier reads: records not yet consumed plus those consumed and still queued for the pipeline.
        Volatile.Write(ref _totalLag, known ? total + _held.Count : -1);
        // The input rate: growth of the high watermarks over the assigned partitions (the same set as last time).
        var count = _partitions.Count;
        if (known && count == _rateCount && _lastHighs > 0 && highs >= _lastHighs)
            Volatile.Write(ref _inputRate, (highs - _lastHighs) * 1000.0 / Math.Max(1, now - _lastRateAt));
        else Volatile.Write(ref _inputRate, -1);
        (_lastHighs, _lastRateAt, _rateCount) = (highs, now, count);
    }

    private const int WatermarkQueryBudgetMs = 100;

    private WatermarkOffsets QueryWatermarks(TopicPartition tp)
    {
        try
        {
            return _consumer.QueryWatermarkOffsets(tp, TimeSpan.FromMilliseconds(WatermarkQueryBudgetMs));
        }
        catch (KafkaException)
        {
            return _consumer.GetWatermarkOffsets(tp);   // the leader did not answer in time: the cached value
        }
    }

    private long _lastHighs, _lastRateAt;
    private int _rateCount;
    private double _inputRate = -1;

    /// <summary>Records arriving per second on the assigned partitions (high-watermark growth over the last half second); null when not known.</summary>
    public double? InputRate => Volatile.Read(ref _inputRate) is var v and >= 0 ? v : null;

    private long _totalLag = -1;

    /// <summary>
    /// Consumer lag over the assigned partitions (high watermarks minus positions: the client's cached fetch state, or
    /// the leaders' answers while paused; plus records held back while the pipeline is full), updated every half second;
    /// null before it is known.
    /// </summary>
    public long? TotalLag => Volatile.Read(ref _totalLag) is var v and >= 0 ? v : null;

    private void OnAssigned(List<TopicPartition> list)
    {
        var added = new List<PartitionOffsets>();
        foreach (var tp in list)
        {
            if (_partitions.ContainsKey(tp)) continue;
            var p = new PartitionOffsets(tp.Topic, tp.Partition.Value);
            _partitions[tp] = p;
            added.Add(p);
        }
        _commit.Assigned(added);
        if (added.Count > 0) PartitionsAssigned?.Invoke();
        _pauseNewlyAssigned = _paused;
        PartitionsChanged();
        RuntimeLog.Assigned(_log, list.Count, string.Join(", ", list.Select(p => $"{p.Topic}[{p.Partition.Value}]")));
    }

    private void OnRevoked(List<TopicPartitionOffset> list)
    {
        // Records held back (never handed to the pipeline) for these partitions will be consumed again
        // by the next owner: forget them. Then give in-flight records a bounded time to complete so the
        // new owner re-processes as little as possible, and let the commit strategy commit.
        var revoked = list.Where(p => _partitions.ContainsKey(p.TopicPartition)).Select(p => _partitions[p.TopicPartition]).ToList();
        if (revoked.Count == 0) return;
        var held = ForgetHeld(p => p is PartitionOffsets o && revoked.Contains(o));
        var deadline = Environment.TickCount64 + (long)_revokeDrainTimeout.TotalMilliseconds;
        foreach (var p in revoked)
        {
            while (p.InFlight > held.GetValueOrDefault(p) && Environment.TickCount64 < deadline) Thread.Sleep(5);
            if (p.InFlight > held.GetValueOrDefault(p)) RuntimeLog.RevokedWithInFlight(_log, p.Topic, p.Partition, p.InFlight);
        }
        _commit.Revoking(revoked);
        Remove(revoked);
        RuntimeLog.Revoked(_log, revoked.Count);
    }

    private void OnLost(List<TopicPartitionOffset> list)
    {
        var lost = list.Where(p => _partitions.ContainsKey(p.TopicPartition)).Select(p => _partitions[p.TopicPartition]).ToList();
        _commit.Lost(lost);
        ForgetHeld(p => p is PartitionOffsets o && lost.Contains(o));
        Remove(lost);
        RuntimeLog.Lost(_log, list.Count);
    }

    /// <summary>Drops held-back records of the given partitions; returns how many each had.</summary>
    private Dictionary<SourcePartition, int> ForgetHeld(Func<SourcePartition, bool> of)
    {
        var forgotten = new Dictionary<SourcePartition, int>();
        for (var n = _held.Count; n > 0; n--)
        {
            var r = _held.Dequeue();
            if (of(r.Partition)) forgotten[r.Partition] = forgotten.GetValueOrDefault(r.Partition) + 1;
            else _held.Enqueue(r);
        }
        return forgotten;
    }

    private void Remove(List<PartitionOffsets> partitions)
    {
        foreach (var p in partitions)
        {
            var tp = new TopicPartition(p.Topic, p.Partition);
            _partitions.Remove(tp);
            // A partition this instance no longer owns has no lag here: its series goes, so sums over instances count each partition once.
            _metrics.Lag.RemoveLabelled(tp.Topic, tp.Partition.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        PartitionsChanged();
    }

    private void PartitionsChanged()
    {
        Volatile.Write(ref _assignedCount, _partitions.Count);
        _metrics.AssignedPartitions.Set(_partitions.Count);
    }

    private void OnError(Error e)
    {
        if (e.IsFatal) RuntimeLog.FatalError(_log, e.Code.ToString(), e.Reason);
        else RuntimeLog.TransportError(_log, e.Code.ToString(), e.Reason);
    }

    private void OnLog(LogMessage m)
    {
        if (m.Level <= SyslogLevel.Warning) RuntimeLog.Librdkafka(_log, m.Facility, m.Message);
    }

    private void Drain(Task pipelineRun, TimeSpan timeout)
    {
        // Held records were never handed over: they stay incomplete and are consumed again next time.
        _held.Clear();
        _input.TryComplete();
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (!pipelineRun.IsCompleted && Environment.TickCount64 < deadline)
        {
            _commit.CommitCompleted();
            Thread.Sleep(10);
        }
        if (!pipelineRun.IsCompleted) RuntimeLog.DrainTimedOut(_log, timeout.TotalSeconds);
        // What is left of the shutdown bound (the drain normally leaves nothing in flight to wait for).
        _commit.Close(TimeSpan.FromMilliseconds(Math.Max(0, deadline - Environment.TickCount64)));
        Close();
    }

    private bool _closed;

    private void Close()
    {
        if (_closed) return;
        _closed = true;
        try
        {
            _consumer.Close();
        }
        catch (Exception e) when (e is KafkaException or PipelineFatalException)
        {
            RuntimeLog.CommitFailed(_log, e.Message);
        }
    }

    public void Dispose() => _consumer.Dispose();

}

/// <summary>A record's Kafka headers as the pipeline sees them (made only for records that have headers).</summary>
internal sealed class HeaderList(Headers headers) : IReadOnlyList<KeyValuePair<string, byte[]>>
{
    public int Count => headers.Count;

    public KeyValuePair<string, byte[]> this[int index] => new(headers[index].Key, headers[index].GetValueBytes());

    public IEnumerator<KeyValuePair<string, byte[]>> GetEnumerator()
    {
        for (var i = 0; i < headers.Count; i++) yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
