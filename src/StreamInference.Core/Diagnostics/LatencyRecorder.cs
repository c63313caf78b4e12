namespace StreamInference.Core.Diagnostics;

/// <summary>
/// Lock-free latency histogram for percentiles in live views and reports: log-linear buckets
/// (16 sub-buckets per power of two, ≤ 6.25 % relative error) from 1 µs to about 70 minutes.
/// Recording is one Interlocked increment; percentiles scan the buckets.
/// </summary>
public sealed class LatencyRecorder
{
    private const int SubBits = 4;
    private const int Sub = 1 << SubBits;
    private const int Powers = 33;
    private readonly long[] _counts = new long[Powers * Sub];
    private long _total;

    public long Count => Interlocked.Read(ref _total);

    public void RecordMicroseconds(long micros)
    {
        Interlocked.Increment(ref _counts[Index(Math.Max(1, micros))]);
        Interlocked.Increment(ref _total);
    }

    public void Record(TimeSpan elapsed) => RecordMicroseconds((long)(elapsed.Ticks / 10));

    private static int Index(long v)
    {
        var power = 63 - (int)long.LeadingZeroCount(v);          // floor(log2 v)
        if (power < SubBits) return (int)v;                 // exact for v < 16
        var sub = (int)((v >> (power - SubBits)) & (Sub - 1));
        var idx = (power - SubBits + 1) * Sub + sub;
        return Math.Min(idx, Powers * Sub - 1);
    }

    private static long UpperBound(int index)
    {
        if (index < Sub) return index;
        var power = index / Sub + SubBits - 1;
        var sub = index % Sub;
        return ((long)(Sub + sub + 1) << (power - SubBits)) - 1;
    }

    /// <summary>The value (µs) at quantile <paramref name="q"/> in [0,1]; 0 when empty.</summary>
    public long PercentileMicroseconds(double q)
    {
        var total = Count;
        if (total == 0) return 0;
        var rank = (long)Math.Ceiling(Math.Clamp(q, 0, 1) * total);
        if (rank < 1) rank = 1;
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += Interlocked.Read(ref _counts[i]);
            if (seen >= rank) return UpperBound(i);
        }
        return UpperBound(_counts.Length - 1);
    }

    public void Reset()
    {
        Array.Clear(_counts);
        Interlocked.Exchange(ref _total, 0);
    }
}
