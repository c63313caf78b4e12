namespace StreamInference.Core.Features.Windows;

/// <summary>Statistics of the values that fell into one time bucket.</summary>
public struct BucketStats
{
    public long Count;
    public double Sum;
    public double Min;
    public double Max;

    public static BucketStats Of(double value) => new() { Count = 1, Sum = value, Min = value, Max = value };

    public void Add(double value)
    {
        Count++;
        Sum += value;
        if (value < Min) Min = value;
        if (value > Max) Max = value;
    }
}

/// <summary>The buckets of one series for one entity (sparse: only buckets that saw a value).</summary>
public sealed class SeriesState
{
    public Dictionary<long, BucketStats> Buckets { get; } = [];

    public void Add(long bucket, double value)
    {
        ref var stats = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(Buckets, bucket, out var existed);
        if (existed) stats.Add(value);
        else stats = BucketStats.Of(value);
    }

    /// <summary>Aggregate over buckets <c>[from, to)</c>; count and sum are 0 over an empty range, the others NaN.</summary>
    public double Read(AggregateFunction function, long from, long to)
    {
        long count = 0;
        double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
        foreach (var (bucket, s) in Buckets)
        {
            if (bucket < from || bucket >= to) continue;
            count += s.Count;
            sum += s.Sum;
            if (s.Min < min) min = s.Min;
            if (s.Max > max) max = s.Max;
        }
        return function switch
        {
            AggregateFunction.Count => count,
            AggregateFunction.Sum => sum,
            AggregateFunction.Mean => count > 0 ? sum / count : double.NaN,
            AggregateFunction.Min => count > 0 ? min : double.NaN,
            AggregateFunction.Max => count > 0 ? max : double.NaN,
            _ => double.NaN,
        };
    }

    public void TrimBelow(long bucket)
    {
        foreach (var b in Buckets.Keys)
            if (b < bucket) Buckets.Remove(b);
    }
}

/// <summary>Windowed-aggregate state of one entity: one <see cref="SeriesState"/> per series and the entity's watermark.</summary>
public sealed class EntityWindowState
{
    public const long NoWatermark = long.MinValue;

    public EntityWindowState(int seriesCount)
    {
        Series = new SeriesState[seriesCount];
        for (var i = 0; i < seriesCount; i++) Series[i] = new SeriesState();
    }

    /// <summary>Newest event time added so far (<see cref="NoWatermark"/> before the first).</summary>
    public long Watermark { get; set; } = NoWatermark;
    public SeriesState[] Series { get; }
}
