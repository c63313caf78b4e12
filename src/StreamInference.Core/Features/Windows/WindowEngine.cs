namespace StreamInference.Core.Features.Windows;

/// <summary>
/// The one implementation of windowed aggregation, called by the streaming path (over state read from
/// Redis) and by the batch path (over state in memory).
/// <para>
/// Semantics. Per entity, events are added in arrival order; an event whose time is more than the
/// allowed lateness L behind the entity's watermark (newest time added) is late: it is scored, but not
/// added. A window of W over buckets of width b, read for an event at time t, covers the W/b whole
/// buckets that end at or before <c>t − L</c>. Every event that can still be added to those buckets has
/// arrived by then, so the value does not depend on arrival order: the stream (arrival order) and the
/// batch path (event-time order) compute the same vector, and no event sees anything later than
/// <c>t − L</c>. The price is freshness: a window lags its event by between L and L + b.
/// </para>
/// </summary>
public sealed class WindowEngine(FeaturePlan plan)
{
    /// <summary>Values beyond ±1e15 are treated as missing: sums stay finite and exact enough in any store.</summary>
    public const double MaxMagnitude = 1e15;

    public FeaturePlan Plan { get; } = plan;
    private long Lateness => Plan.AllowedLatenessMs;

    public EntityWindowState NewState() => new(Plan.Series.Count);

    /// <summary>Whether a value enters the aggregates (finite and within <see cref="MaxMagnitude"/>).</summary>
    public static bool IsAggregatable(double value) => double.IsFinite(value) && Math.Abs(value) <= MaxMagnitude;

    /// <summary>True when an event at <paramref name="eventTimeMs"/> is too late to be added.</summary>
    public bool IsLate(long watermark, long eventTimeMs) =>
        watermark != EntityWindowState.NoWatermark && eventTimeMs < watermark - Lateness;

    /// <summary>
    /// First bucket still needed once the watermark is <paramref name="watermark"/>: older buckets can be
    /// deleted. Reads are clamped to it so that an entity whose old buckets were deleted (the stream)
    /// and one whose were not (the batch path) agree, even for late events.
    /// </summary>
    public long RetainFrom(SeriesSpec series, long watermark) =>
        watermark == EntityWindowState.NoWatermark
            ? long.MinValue
            : Durations.FloorDiv(watermark - 2 * Lateness, series.BucketMs) - series.RetainBuckets - 1;

    /// <summary>The bucket of a value at <paramref name="timeMs"/>.</summary>
    public static long BucketOf(SeriesSpec series, long timeMs) => Durations.FloorDiv(timeMs, series.BucketMs);

    /// <summary>
    /// Writes every window feature's raw aggregate for an event at <paramref name="eventTimeMs"/>, given
    /// the entity's watermark when the event arrived (<paramref name="arrivalWatermark"/>).
    /// </summary>
    public void Read(EntityWindowState state, long arrivalWatermark, long eventTimeMs, Span<double> aggregates)
    {
        var windows = Plan.Windows;
        for (var w = 0; w < windows.Count; w++)
        {
            var window = windows[w];
            var series = Plan.Series[window.Series];
            var end = Durations.FloorDiv(eventTimeMs - Lateness, series.BucketMs);
            var from = Math.Max(end - window.Buckets, RetainFrom(series, arrivalWatermark));
            aggregates[window.Slot] = state.Series[window.Series].Read(window.Function, from, end);
        }
    }

    /// <summary>
    /// Adds an event (its decoded numeric slots) to the entity's series and advances its watermark.
    /// Callers skip late events (<see cref="IsLate"/>). Missing (NaN) or absurd (<see cref="IsAggregatable"/>) values are not added to their
    /// series; the event-count series counts every event.
    /// </summary>
    public void Add(EntityWindowState state, long eventTimeMs, ReadOnlySpan<double> numerics)
    {
        var all = Plan.Series;
        for (var s = 0; s < all.Count; s++)
        {
            var series = all[s];
            var value = series.ValueSlot < 0 ? 1.0 : numerics[series.ValueSlot];
            if (!IsAggregatable(value)) continue;
            state.Series[s].Add(BucketOf(series, eventTimeMs), value);
        }
        if (eventTimeMs > state.Watermark) state.Watermark = eventTimeMs;
    }

    /// <summary>Deletes buckets no read can need any more (the stream does this in Redis).</summary>
    public void Trim(EntityWindowState state)
    {
        for (var s = 0; s < Plan.Series.Count; s++)
            state.Series[s].TrimBelow(RetainFrom(Plan.Series[s], state.Watermark));
    }
}
