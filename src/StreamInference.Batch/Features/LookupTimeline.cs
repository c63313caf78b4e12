using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;
using StreamInference.Batch.History;

namespace StreamInference.Batch.Features;

/// <summary>
/// Lookup values per entity over time, as the batch path computes (and materializes) them: one
/// snapshot per refresh boundary, each computed only from events before that boundary (and, for the
/// label, only from labels already known then). An event reads the newest snapshot at or before its
/// time, unless older than the lookup's TTL — the same rule the stream applies to what it finds in Redis.
/// </summary>
public sealed class LookupTimeline
{
    private readonly FeaturePlan _plan;
    // Per lookup: entity → snapshots (as-of ascending).
    private readonly Dictionary<string, List<(long AsOf, double[] Values)>>[] _byLookup;

    public LookupTimeline(FeaturePlan plan)
    {
        _plan = plan;
        _byLookup = new Dictionary<string, List<(long, double[])>>[plan.Lookups.Count];
        for (var i = 0; i < _byLookup.Length; i++) _byLookup[i] = new(StringComparer.Ordinal);
    }

    public int SnapshotCount => _byLookup.Sum(d => d.Values.Sum(l => l.Count));

    /// <summary>Records the values of <paramref name="lookup"/> for <paramref name="entity"/> as of <paramref name="asOfMs"/> (ascending per entity).</summary>
    public void Add(int lookup, string entity, long asOfMs, double[] values)
    {
        if (!_byLookup[lookup].TryGetValue(entity, out var list)) _byLookup[lookup][entity] = list = [];
        if (list.Count > 0 && list[^1].AsOf >= asOfMs) throw new ArgumentException("Snapshots must be added in as-of order.");
        list.Add((asOfMs, values));
    }

    /// <summary>The newest snapshot of every entity at or before <paramref name="asOfMs"/> (what to materialize).</summary>
    public IEnumerable<(string Entity, long AsOf, double[] Values)> Latest(int lookup, long asOfMs = long.MaxValue)
    {
        foreach (var (entity, list) in _byLookup[lookup])
        {
            var i = Find(list, asOfMs);
            if (i >= 0) yield return (entity, list[i].AsOf, list[i].Values);
        }
    }

    /// <summary>
    /// Writes the lookup values an event at <paramref name="eventTimeMs"/> sees into <paramref name="destination"/>
    /// (the plan's lookup slots); NaN where missing, stale or not yet known. Returns how many lookups were stale.
    /// </summary>
    public int Resolve(ReadOnlySpan<string?> texts, long eventTimeMs, Span<double> destination)
    {
        var stale = 0;
        for (var l = 0; l < _plan.Lookups.Count; l++)
        {
            var spec = _plan.Lookups[l];
            var slice = destination.Slice(spec.FirstValueSlot, spec.Fields.Count);
            slice.Fill(double.NaN);
            var entity = texts[spec.EntityTextSlot];
            if (entity is null || !_byLookup[l].TryGetValue(entity, out var list)) continue;
            var i = Find(list, eventTimeMs);
            if (i < 0) continue;
            if (!FeatureKeys.IsUsable(list[i].AsOf, eventTimeMs, spec.TtlMs)) { stale++; continue; }
            list[i].Values.CopyTo(slice);
        }
        return stale;
    }

    private static int Find(List<(long AsOf, double[] Values)> list, long t)
    {
        int lo = 0, hi = list.Count - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (list[mid].AsOf <= t) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found;
    }

    /// <summary>
    /// Computes every lookup's snapshots from <paramref name="history"/>: at each multiple of the lookup's
    /// refresh interval from the first event up to <paramref name="untilMs"/>, each field is its window
    /// aggregate over the buckets that end at or before the snapshot time (minus the label delay for
    /// label-based fields), using the same bucketed series code as the stream's windows.
    /// </summary>
    public static LookupTimeline Compute(EventHistory history, long untilMs, int[]? eventTimeOrder = null)
    {
        var plan = history.Plan;
        var timeline = new LookupTimeline(plan);
        if (history.Count == 0) return timeline;
        var order = eventTimeOrder ?? history.EventTimeOrder();
        for (var l = 0; l < plan.Lookups.Count; l++)
        {
            var spec = plan.Lookups[l];
            var inputs = spec.Definitions.Select(d => d.Of is null ? (Func<int, double>)(_ => 1.0) : history.NumericColumn(d.Of)).ToArray();
            var states = new Dictionary<string, SeriesState[]>(StringComparer.Ordinal);
            var next = (Durations.FloorDiv(history.TimeMs(order[0]), spec.RefreshMs) + 1) * spec.RefreshMs;
            var pos = 0;
            while (next <= untilMs)
            {
                for (; pos < order.Length && history.TimeMs(order[pos]) < next; pos++)
                {
                    var i = order[pos];
                    var entity = history.Texts(i)[spec.EntityTextSlot];
                    if (entity is null) continue;
                    if (!states.TryGetValue(entity, out var series))
                    {
                        series = new SeriesState[spec.Definitions.Count];
                        for (var d = 0; d < series.Length; d++) series[d] = new SeriesState();
                        states[entity] = series;
                    }
                    for (var d = 0; d < series.Length; d++)
                    {
                        var v = inputs[d](i);
                        if (WindowEngine.IsAggregatable(v)) series[d].Add(Durations.FloorDiv(history.TimeMs(i), spec.Definitions[d].BucketMs), v);
                    }
                }
                foreach (var (entity, series) in states)
                    timeline.Add(l, entity, next, Snapshot(plan, spec, series, next));
                next += spec.RefreshMs;
            }
        }
        return timeline;
    }

    private static double[] Snapshot(FeaturePlan plan, LookupSpec spec, SeriesState[] series, long asOfMs)
    {
        var values = new double[spec.Definitions.Count];
        for (var d = 0; d < values.Length; d++)
        {
            var def = spec.Definitions[d];
            var knownAt = def.OfLabel ? asOfMs - plan.LabelKnownAfterMs : asOfMs;
            var end = Durations.FloorDiv(knownAt, def.BucketMs);
            values[d] = series[d].Read(def.Function, end - def.WindowMs / def.BucketMs, end);
            series[d].TrimBelow(end - def.WindowMs / def.BucketMs - 1);
        }
        return values;
    }
}
