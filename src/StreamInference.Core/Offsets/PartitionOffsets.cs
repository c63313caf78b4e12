namespace StreamInference.Core.Offsets;

/// <summary>
/// Contiguous-watermark tracking for one assigned partition.
/// </summary>
/// <remarks>
/// Records are tracked in consume order (strictly increasing offsets, possibly with gaps from
/// compaction or transaction markers) and may complete in any order: a dead letter can be delivered
/// before an earlier record's prediction. The committable offset only advances over a contiguous run
/// of completed records, so a crash never skips an unfinished record (at-least-once).
/// Tracking returns a sequence number; completion by sequence is O(1) with no search and no allocation
/// once the ring has grown to the in-flight window.
/// Thread-safety: <see cref="Track"/> runs on the consume thread, <see cref="Complete"/> on the producer's
/// delivery thread; a lock per partition keeps both short.
/// </remarks>
public sealed class PartitionOffsets : SourcePartition
{
    private readonly Lock _gate = new();
    private long[] _offsets;
    private bool[] _done;
    private int _head;          // ring index of the oldest in-flight record
    private int _count;         // in-flight records
    private long _headSeq;      // sequence number of the record at _head
    private long _nextSeq;
    private long _committable = -1;   // next offset to commit (last contiguous completed + 1); -1 none yet
    private long _lastTaken = -1;
    private long _lastTracked = -1;

    public PartitionOffsets(string topic, int partition, int initialCapacity = 1024) : base(topic, partition)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(initialCapacity, 1);
        _offsets = new long[initialCapacity];
        _done = new bool[initialCapacity];
    }

    /// <summary>Set when the partition was revoked or lost; completions after that are ignored.</summary>
    public override bool IsRevoked => _revoked;
    private volatile bool _revoked;


    public int InFlight { get { lock (_gate) return _count; } }

    /// <summary>Records tracked in this assignment (read by the consume thread, the only one that tracks).</summary>
    public long Tracked => Volatile.Read(ref _nextSeq);

    /// <summary>Registers a consumed record. Offsets must increase.</summary>
    public long Track(long offset) => TryTrack(offset, out var sequence)
        ? sequence
        : throw new InvalidOperationException($"Offset {offset} tracked after {_lastTracked} on {Topic}[{Partition}]; offsets must increase.");

    /// <summary>
    /// Registers a consumed record; false (nothing tracked) when <paramref name="offset"/> is at or below
    /// an offset already tracked in this assignment: the client handed the record over a second time (it
    /// can re-fetch from an older position, e.g. after pause/resume), and it is in flight or done.
    /// </summary>
    public bool TryTrack(long offset, out long sequence)
    {
        lock (_gate)
        {
            sequence = -1;
            if (offset <= _lastTracked) return false;
            if (_count == _offsets.Length) Grow();
            var slot = (_head + _count) % _offsets.Length;
            _offsets[slot] = offset;
            _done[slot] = false;
            _count++;
            _lastTracked = offset;
            sequence = _nextSeq++;
            return true;
        }
    }

    /// <summary>Marks a tracked record as finished (published or dead-lettered).</summary>
    public void Complete(long sequence)
    {
        lock (_gate)
        {
            if (IsRevoked) return;
            var index = sequence - _headSeq;
            if (index < 0 || index >= _count)
                throw new InvalidOperationException($"Sequence {sequence} is not in flight on {Topic}[{Partition}] (window {_headSeq}..{_headSeq + _count - 1}).");
            var slot = (int)((_head + index) % _offsets.Length);
            _done[slot] = true;
            while (_count > 0 && _done[_head])
            {
                _committable = _offsets[_head] + 1;
                _head = (_head + 1) % _offsets.Length;
                _headSeq++;
                _count--;
            }
        }
    }

    /// <summary>Returns the next offset to commit if it moved since the last call.</summary>
    public bool TryTakeCommittable(out long offset)
    {
        lock (_gate)
        {
            offset = _committable;
            if (_committable < 0 || _committable == _lastTaken) return false;
            _lastTaken = _committable;
            return true;
        }
    }

    /// <summary>The next offset to commit, or -1 when nothing completed yet.</summary>
    public long Committable { get { lock (_gate) return _committable; } }

    public void MarkRevoked()
    {
        lock (_gate) _revoked = true;
    }

    private void Grow()
    {
        var offsets = new long[_offsets.Length * 2];
        var done = new bool[_offsets.Length * 2];
        for (var i = 0; i < _count; i++)
        {
            var slot = (_head + i) % _offsets.Length;
            offsets[i] = _offsets[slot];
            done[i] = _done[slot];
        }
        _offsets = offsets;
        _done = done;
        _head = 0;
    }
}
