namespace StreamInference.Core.Features;

// The YAML shape of a feature-set definition (schemas/features/*.yaml). Parsed by FeatureSetLoader,
// validated and compiled into a FeaturePlan; nothing else reads these classes. Durations are written
// as an integer and a unit: 500ms, 30s, 5m, 1h, 30d.

public sealed class FeatureSetDocument
{
    public string? FeatureSet { get; set; }
    public int Version { get; set; }
    public string? Description { get; set; }
    public EventSection? Event { get; set; }
    public LabelSection? Label { get; set; }
    public List<LookupDocument> Lookups { get; set; } = [];
    public List<FeatureDocument> Features { get; set; } = [];
}

public sealed class EventSection
{
    /// <summary>Field holding the event id (string).</summary>
    public string? IdField { get; set; }
    /// <summary>
    /// Field holding the entity key. It is the Kafka message key, so all events of one entity are in
    /// one partition, in order; windowed aggregations are kept per value of this field.
    /// </summary>
    public string? EntityKeyField { get; set; }
    /// <summary>Field holding the event time (timestamp-millis or long epoch milliseconds).</summary>
    public string? TimeField { get; set; }
    /// <summary>
    /// How far an event's time may lag behind the newest event time already seen for its entity and
    /// still be added to the windowed aggregates. Later events are scored but not aggregated.
    /// </summary>
    public string? AllowedLateness { get; set; }
}

public sealed class LabelSection
{
    /// <summary>Column of the history holding the training label (0/1); never part of the live event.</summary>
    public string? Field { get; set; }
    /// <summary>How long after an event's time its label becomes known (e.g. chargebacks: days).</summary>
    public string? KnownAfter { get; set; }
}

public sealed class LookupDocument
{
    /// <summary>Name of the lookup group; also the suffix of the Redis key.</summary>
    public string? Name { get; set; }
    /// <summary>Event field whose value identifies the entity (e.g. merchant_id).</summary>
    public string? EntityField { get; set; }
    /// <summary>Age after which a materialized value counts as stale and the feature's default is used.</summary>
    public string? Ttl { get; set; }
    /// <summary>How often the batch path recomputes the values (snapshot cadence in event time).</summary>
    public string? Refresh { get; set; }
    public List<LookupFieldDocument> Fields { get; set; } = [];
}

/// <summary>A value the batch path computes per entity from history: a windowed aggregate as of each refresh.</summary>
public sealed class LookupFieldDocument
{
    public string? Name { get; set; }
    /// <summary>count, sum, mean, min or max.</summary>
    public string? Function { get; set; }
    /// <summary>Numeric event field or the label field aggregated; omitted for count.</summary>
    public string? Of { get; set; }
    public string? Window { get; set; }
    public string? Bucket { get; set; }
}

public sealed class WindowDocument
{
    /// <summary>count, sum, mean, min or max.</summary>
    public string? Function { get; set; }
    /// <summary>Numeric event field aggregated; omitted for count (counts events).</summary>
    public string? Of { get; set; }
    /// <summary>Window length, e.g. 10m, 1h, 30d.</summary>
    public string? Size { get; set; }
    /// <summary>Bucket width of the state kept in Redis; defaults by window size (1m up to 1h, 5m up to 1d, else 1h).</summary>
    public string? Bucket { get; set; }
    /// <summary>Entity the window is kept for; must be the event's entityKeyField (the default).</summary>
    public string? Entity { get; set; }
}

public sealed class FeatureDocument
{
    public string? Name { get; set; }
    /// <summary>Event field the feature comes from (exactly one of Event, Window, Lookup).</summary>
    public string? Event { get; set; }
    /// <summary>Windowed aggregate per entity maintained by the stream itself.</summary>
    public WindowDocument? Window { get; set; }
    /// <summary><c>lookupName.field</c>: a value the batch path materializes.</summary>
    public string? Lookup { get; set; }
    /// <summary>
    /// identity (default), log, log1p, clip(MIN,MAX), bucketize(B1,B2,..), index(A,B,..), equals(VALUE),
    /// hour_of_day, day_of_week.
    /// </summary>
    public string? Transform { get; set; }
    /// <summary>Required: value used when the input is missing, null, NaN, unknown or stale.</summary>
    public double? Default { get; set; }
}
