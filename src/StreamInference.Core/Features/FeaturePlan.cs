namespace StreamInference.Core.Features;

public enum EventFieldKind
{
    /// <summary>int, long, float, double or boolean; decoded to double (NaN when null).</summary>
    Numeric,
    /// <summary>string or enum symbol.</summary>
    Text,
    /// <summary>timestamp-millis (or long epoch milliseconds); decoded to double milliseconds.</summary>
    Timestamp,
}

public enum TransformKind { Identity, Log1p, HourOfDay, DayOfWeek, EqualsText, Clip }

public enum FeatureSourceKind { Event, Lookup }

/// <summary>An event field the decoder must extract, and the slot it goes to.</summary>
public sealed record EventFieldSpec(string Name, EventFieldKind Kind, int Slot);

/// <summary>A Redis hash read per event: key <c>{entityField:value}:name</c>, fields in order.</summary>
public sealed record LookupSpec(string Name, string EntityField, int EntityTextSlot, IReadOnlyList<string> Fields, int FirstValueSlot);

/// <summary>One model input column.</summary>
public sealed record FeatureSpec(
    string Name,
    int Index,
    FeatureSourceKind Source,
    int Slot,
    TransformKind Transform,
    string? TransformText,
    double Min,
    double Max,
    float Default);

/// <summary>
/// A validated feature set compiled to slot indices: the decoder writes event fields into numeric and
/// text slots, the feature store writes lookup values into lookup slots, and the assembler reads
/// slots by index only (no dictionary lookups per event).
/// </summary>
public sealed class FeaturePlan
{
    public required string Name { get; init; }
    public required int Version { get; init; }
    public required string IdField { get; init; }
    public required string EntityKeyField { get; init; }
    public required string TimeField { get; init; }
    /// <summary>Fields read into <c>double</c> slots (numeric and timestamp kinds).</summary>
    public required IReadOnlyList<EventFieldSpec> NumericFields { get; init; }
    /// <summary>Fields read into <c>string</c> slots.</summary>
    public required IReadOnlyList<EventFieldSpec> TextFields { get; init; }
    public required IReadOnlyList<LookupSpec> Lookups { get; init; }
    public required IReadOnlyList<FeatureSpec> Features { get; init; }
    public int LookupValueCount { get; init; }

    public int FeatureCount => Features.Count;

    public int IndexOf(string featureName)
    {
        for (var i = 0; i < Features.Count; i++)
            if (Features[i].Name == featureName) return i;
        return -1;
    }
}
