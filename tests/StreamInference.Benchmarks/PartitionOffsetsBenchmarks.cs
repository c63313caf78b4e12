using BenchmarkDotNet.Attributes;
using StreamInference.Core.Offsets;

namespace StreamInference.Benchmarks;

/// <summary>
/// Offset tracking as the pipeline drives it, per record: the consume loop reads <c>Tracked</c> (first-record
/// log), calls <c>TryTrack</c> and, once per loop turn, <c>TryTakeCommittable</c> (then StoreOffset when it
/// moved); the producer's delivery thread calls <c>Complete</c> for every record of an acknowledged batch
/// of 256. The baseline does the same bookkeeping in a plain array ring without the lock: the floor.
/// Results are per record.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("offsets")]
public class PartitionOffsetsBenchmarks
{
    private const int BatchSize = 256;
    private const int Batches = 16;
    private const int Records = BatchSize * Batches;

    private PartitionOffsets _partition = null!;
    private readonly long[] _sequences = new long[BatchSize];
    private long _nextOffset;

    // Baseline ring.
    private readonly long[] _ringOffsets = new long[1024];
    private readonly bool[] _ringDone = new bool[1024];
    private long _ringHead;
    private long _ringNext;
    private long _ringCommittable = -1;
    private long _ringTaken = -1;

    [GlobalSetup]
    public void Setup() => _partition = new PartitionOffsets("payments", 0);

    [Benchmark(Baseline = true, OperationsPerInvoke = Records)]
    public long UnlockedRing()
    {
        long stored = 0;
        for (var b = 0; b < Batches; b++)
        {
            for (var i = 0; i < BatchSize; i++)
            {
                var offset = _nextOffset++;
                var seq = _ringNext++;
                _ringOffsets[seq & 1023] = offset;
                _ringDone[seq & 1023] = false;
                _sequences[i] = seq;
                if (_ringCommittable >= 0 && _ringCommittable != _ringTaken)
                {
                    _ringTaken = _ringCommittable;
                    stored++;
                }
            }
            for (var i = 0; i < BatchSize; i++)
            {
                _ringDone[_sequences[i] & 1023] = true;
                while (_ringHead < _ringNext && _ringDone[_ringHead & 1023])
                {
                    _ringCommittable = _ringOffsets[_ringHead & 1023] + 1;
                    _ringHead++;
                }
            }
        }
        return stored;
    }

    [Benchmark(OperationsPerInvoke = Records)]
    public long TrackCompleteCommit()
    {
        var p = _partition;
        long stored = 0;
        for (var b = 0; b < Batches; b++)
        {
            // Consume thread: one record per loop turn.
            for (var i = 0; i < BatchSize; i++)
            {
                if (p.TryTakeCommittable(out _)) stored++;
                var first = p.Tracked == 0;
                if (!p.TryTrack(_nextOffset++, out _sequences[i]) || first) stored--;
            }
            // Delivery thread: the batch was acknowledged.
            for (var i = 0; i < BatchSize; i++) p.Complete(_sequences[i]);
        }
        return stored;
    }
}
