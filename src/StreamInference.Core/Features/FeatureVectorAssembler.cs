namespace StreamInference.Core.Features;

/// <summary>
/// Turns one event's decoded slots, window aggregates and lookup values into the model's feature
/// vector, in the definition's order. The single implementation of the transforms: the streaming path and the batch
/// path both call it. Allocation-free.
/// </summary>
public sealed class FeatureVectorAssembler(FeaturePlan plan)
{
    public FeaturePlan Plan { get; } = plan;

    /// <summary>
    /// Writes the vector into <paramref name="destination"/> and returns how many features fell back to
    /// their default; <paramref name="defaultedPerFeature"/> (length = feature count) is incremented for each.
    /// </summary>
    public int Assemble(
        ReadOnlySpan<double> numerics,
        ReadOnlySpan<string?> texts,
        ReadOnlySpan<double> windows,
        ReadOnlySpan<double> lookups,
        Span<float> destination,
        Span<long> defaultedPerFeature) => Assemble(numerics, texts, windows, lookups, destination, defaultedPerFeature, out _);

    /// <summary>As above; <paramref name="defaultedMask"/> gets bit f set when feature f (f &lt; 64) took its default.</summary>
    public int Assemble(
        ReadOnlySpan<double> numerics,
        ReadOnlySpan<string?> texts,
        ReadOnlySpan<double> windows,
        ReadOnlySpan<double> lookups,
        Span<float> destination,
        Span<long> defaultedPerFeature,
        out long defaultedMask)
    {
        defaultedMask = 0;
        var features = Plan.Features;
        var defaulted = 0;
        for (var i = 0; i < features.Count; i++)
        {
            var f = features[i];
            double value;
            bool present;
            if (f.Transform == TransformKind.EqualsText)
            {
                var s = texts[f.Slot];
                present = s is not null;
                value = present && string.Equals(s, f.TransformText, StringComparison.Ordinal) ? 1.0 : 0.0;
            }
            else if (f.Transform == TransformKind.IndexText)
            {
                var s = texts[f.Slot];
                value = s is null ? -1 : Array.IndexOf(f.Categories, s);
                present = value >= 0;
            }
            else
            {
                var raw = f.Source switch
                {
                    FeatureSourceKind.Event => numerics[f.Slot],
                    FeatureSourceKind.Window => windows[f.Slot],
                    _ => lookups[f.Slot],
                };
                present = double.IsFinite(raw);
                value = present ? Apply(f, raw) : 0.0;
                present &= double.IsFinite(value);
            }
            if (present)
            {
                destination[i] = (float)value;
            }
            else
            {
                destination[i] = f.Default;
                defaultedPerFeature[i]++;
                if (i < 64) defaultedMask |= 1L << i;
                defaulted++;
            }
        }
        return defaulted;
    }

    private static double Apply(FeatureSpec f, double raw) => f.Transform switch
    {
        TransformKind.Identity => raw,
        TransformKind.Log => raw > 0.0 ? Math.Log(raw) : double.NaN,
        TransformKind.Log1p => raw > -1.0 ? Math.Log(1.0 + raw) : double.NaN,
        TransformKind.Bucketize => Bucket(f.Boundaries, raw),
        TransformKind.Clip => Math.Clamp(raw, f.Min, f.Max),
        TransformKind.HourOfDay => HourOfDay(raw),
        TransformKind.DayOfWeek => DayOfWeek(raw),
        _ => raw,
    };

    /// <summary>Number of boundaries at or below <paramref name="value"/>: 0 below the first, N at or above the last.</summary>
    public static double Bucket(double[] boundaries, double value)
    {
        var i = Array.BinarySearch(boundaries, value);
        return i >= 0 ? i + 1 : ~i;
    }

    private const double MillisPerHour = 3_600_000.0;

    /// <summary>UTC hour of day, 0..23, from epoch milliseconds.</summary>
    public static double HourOfDay(double epochMillis)
    {
        var hours = Math.Floor(epochMillis / MillisPerHour);
        var h = hours % 24.0;
        return h < 0 ? h + 24.0 : h;
    }

    /// <summary>UTC day of week, 0 = Monday .. 6 = Sunday, from epoch milliseconds.</summary>
    public static double DayOfWeek(double epochMillis)
    {
        var days = Math.Floor(epochMillis / (24 * MillisPerHour));
        // 1970-01-01 was a Thursday (3 when Monday = 0).
        var d = (days + 3) % 7.0;
        return d < 0 ? d + 7.0 : d;
    }
}
