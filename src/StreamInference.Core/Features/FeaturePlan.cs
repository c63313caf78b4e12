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

public enum TransformKind { Identity, Log, Log1p, HourOfDay, DayOfWeek, EqualsText, IndexText, Bucketize, Clip }

public enum FeatureSourceKind { Event, Window, Lookup }

public enum AggregateFunction { Count, Sum, Mean, Min, Max }

/// <summary>An event field the decoder must extract, and the slot it goes to.</summary>
public sealed record EventFieldSpec(string Name, EventFieldKind Kind, int Slot);

/// <summary>
/// Bucketed state of one event field (or of the event count) per entity: what the stream keeps in
/// Redis and what the batch path keeps in memory. <see cref="RetainBuckets"/> is the longest window
/// over this series, in buckets.
/// </summary>
public sealed record SeriesSpec(int Index, string Name, string? ValueField, int ValueSlot, long BucketMs, int RetainBuckets);

/// <summary>A windowed aggregate read: <paramref name="Buckets"/> buckets of series <paramref name="Series"/>.</summary>
public sealed record WindowSpec(int Slot, string Feature, AggregateFunction Function, int Series, long SizeMs, int Buckets);

/// <summary>How the batch path computes one lookup field per entity at each refresh.</summary>
public sealed record LookupFieldSpec(string Name, AggregateFunction Function, string? Of, bool OfLabel, long WindowMs, long BucketMs);

/// <summary>A Redis hash read per event: key <c>{entityField:value}:name</c>, fields in order, plus <c>_asof</c>.</summary>
public sealed record LookupSpec(
    string Name,
    string EntityField,
    int EntityTextSlot,
    IReadOnlyList<string> Fields,
    int FirstValueSlot,
    long TtlMs,
    long RefreshMs,
    IReadOnlyList<LookupFieldSpec> Definitions);

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
    float Default)
{
    /// <summary>Ascending bucket boundaries for <see cref="TransformKind.Bucketize"/>.</summary>
    public double[] Boundaries { get; init; } = [];
    /// <summary>Categories for <see cref="TransformKind.IndexText"/>, in index order.</summary>
    public string[] Categories { get; init; } = [];
    /// <summary>1-based line of the feature in its definition file (0 when unknown).</summary>
    public int Line { get; init; }
}

/// <summary>
/// A validated feature set compiled to slot indices: the decoder writes event fields into numeric and
/// text slots, the window engine writes aggregates into window slots, the feature store writes lookup
/// values into lookup slots, and the assembler reads slots by index only.
/// </summary>
public sealed class FeaturePlan
{
    public required string Name { get; init; }
    public required int Version { get; init; }
    public required string IdField { get; init; }
    public required string EntityKeyField { get; init; }
    public required string TimeField { get; init; }
    public long AllowedLatenessMs { get; init; }
    /// <summary>Label column of histories (training sets); null when the definition has none.</summary>
    public string? LabelField { get; init; }
    public long LabelKnownAfterMs { get; init; }
    /// <summary>Fields read into <c>double</c> slots (numeric and timestamp kinds).</summary>
    public required IReadOnlyList<EventFieldSpec> NumericFields { get; init; }
    /// <summary>Fields read into <c>string</c> slots.</summary>
    public required IReadOnlyList<EventFieldSpec> TextFields { get; init; }
    /// <summary>Numeric history columns only the batch path reads (lookup inputs the live event need not carry).</summary>
    public IReadOnlyList<string> BatchOnlyFields { get; init; } = [];
    public IReadOnlyList<SeriesSpec> Series { get; init; } = [];
    public IReadOnlyList<WindowSpec> Windows { get; init; } = [];
    public required IReadOnlyList<LookupSpec> Lookups { get; init; }
    public required IReadOnlyList<FeatureSpec> Features { get; init; }
    public int LookupValueCount { get; init; }
    /// <summary>Slot of the entity key in the text slots.</summary>
    public int EntityKeySlot { get; init; }

    public int FeatureCount => Features.Count;

    /// <summary>
    /// How much history every feature needs before its value is complete: the longest window (plus
    /// lateness and a bucket) or lookup window (plus refresh and label delay). Training rows earlier than
    /// this after the start of a history see truncated windows, unlike anything served live.
    /// </summary>
    public long WarmupMs
    {
        get
        {
            long warmup = 0;
            foreach (var w in Windows) warmup = Math.Max(warmup, w.SizeMs + AllowedLatenessMs + Series[w.Series].BucketMs);
            foreach (var l in Lookups)
                foreach (var d in l.Definitions)
                    warmup = Math.Max(warmup, d.WindowMs + d.BucketMs + l.RefreshMs + (d.OfLabel ? LabelKnownAfterMs : 0));
            return warmup;
        }
    }
    public int WindowCount => Windows.Count;

    public int IndexOf(string featureName)
    {
        for (var i = 0; i < Features.Count; i++)
            if (Features[i].Name == featureName) return i;
        return -1;
    }

    public int NumericSlot(string field)
    {
        foreach (var f in NumericFields)
            if (f.Name == field) return f.Slot;
        return -1;
    }

    public int TextSlot(string field)
    {
        foreach (var f in TextFields)
            if (f.Name == field) return f.Slot;
        return -1;
    }
}
