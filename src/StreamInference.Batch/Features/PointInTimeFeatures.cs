using StreamInference.Batch.History;
using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;

namespace StreamInference.Batch.Features;

/// <summary>Feature vectors of a history, one row per event (in the history's arrival order).</summary>
public sealed class FeatureRows(FeaturePlan plan, int count)
{
    public FeaturePlan Plan { get; } = plan;
    public int Count { get; } = count;
    public float[] Values { get; } = new float[count * plan.FeatureCount];
    /// <summary>Bit f set when feature f fell back to its default (features beyond 64 are not tracked).</summary>
    public long[] DefaultedMask { get; } = new long[count];
    public bool[] Late { get; } = new bool[count];
    public long[] DefaultedPerFeature { get; } = new long[plan.FeatureCount];
    public long LateEvents { get; set; }
    public long StaleLookups { get; set; }

    public ReadOnlySpan<float> Row(int i) => Values.AsSpan(i * Plan.FeatureCount, Plan.FeatureCount);
}

/// <summary>
/// The batch path's feature computation: the same <see cref="WindowEngine"/> and
/// <see cref="FeatureVectorAssembler"/> the stream uses, applied to a history in event-time order, so
/// every event sees only what was known at its time.
/// <list type="number">
/// <item>Arrival order, per entity: the watermark each event arrived to and whether it was late —
/// exactly what the stream decides when the events arrive.</item>
/// <item>Event-time order: read each event's windows, then add it (unless late); lookups come from the
/// <see cref="LookupTimeline"/> as of the event's time.</item>
/// </list>
/// </summary>
public static class PointInTimeFeatures
{
    public static FeatureRows Compute(EventHistory history, LookupTimeline lookups, IProgress<long>? progress = null, int[]? eventTimeOrder = null,
        Dictionary<string, EntityWindowState>? finalStates = null)
    {
        var plan = history.Plan;
        var engine = new WindowEngine(plan);
        var assembler = new FeatureVectorAssembler(plan);
        var n = history.Count;
        var rows = new FeatureRows(plan, n);

        // 1. Arrival order: watermark before each event, and the late decision.
        var arrivalWatermark = new long[n];
        var watermarks = new Dictionary<string, long>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var entity = history.EntityKey(i);
            var wm = watermarks.TryGetValue(entity, out var w) ? w : EntityWindowState.NoWatermark;
            arrivalWatermark[i] = wm;
            var t = history.TimeMs(i);
            if (engine.IsLate(wm, t)) { rows.Late[i] = true; rows.LateEvents++; }
            else if (t > wm) watermarks[entity] = t;
        }

        // 2. Event-time order: windows, lookups, assembly.
        var order = eventTimeOrder ?? history.EventTimeOrder();
        var states = finalStates ?? new Dictionary<string, EntityWindowState>(StringComparer.Ordinal);
        var windowValues = new double[Math.Max(1, plan.WindowCount)];
        var lookupValues = new double[Math.Max(1, plan.LookupValueCount)];
        var defaulted = new long[plan.FeatureCount];
        for (var k = 0; k < n; k++)
        {
            var i = order[k];
            var entity = history.EntityKey(i);
            if (!states.TryGetValue(entity, out var state)) states[entity] = state = engine.NewState();
            var t = history.TimeMs(i);
            engine.Read(state, arrivalWatermark[i], t, windowValues);
            if (!rows.Late[i]) engine.Add(state, t, history.Numerics(i));
            rows.StaleLookups += lookups.Resolve(history.Texts(i), t, lookupValues);

            Array.Clear(defaulted);
            assembler.Assemble(history.Numerics(i), history.Texts(i), windowValues, lookupValues,
                rows.Values.AsSpan(i * plan.FeatureCount, plan.FeatureCount), defaulted);
            long mask = 0;
            for (var f = 0; f < defaulted.Length; f++)
            {
                if (defaulted[f] == 0) continue;
                rows.DefaultedPerFeature[f]++;
                if (f < 64) mask |= 1L << f;
            }
            rows.DefaultedMask[i] = mask;
            if ((k & 0x3FFF) == 0) progress?.Report(k);
        }
        progress?.Report(n);
        return rows;
    }
}
