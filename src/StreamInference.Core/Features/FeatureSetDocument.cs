namespace StreamInference.Core.Features;

// The YAML shape of a feature-set definition (schemas/features/*.yaml). Parsed by FeatureSetLoader,
// validated and compiled into a FeaturePlan; nothing else reads these classes.

public sealed class FeatureSetDocument
{
    public string? FeatureSet { get; set; }
    public int Version { get; set; }
    public string? Description { get; set; }
    public EventSection? Event { get; set; }
    public List<LookupDocument> Lookups { get; set; } = [];
    public List<FeatureDocument> Features { get; set; } = [];
}

public sealed class EventSection
{
    /// <summary>Field holding the event id (string).</summary>
    public string? IdField { get; set; }
    /// <summary>Field holding the entity key; records without it are dead-lettered.</summary>
    public string? EntityKeyField { get; set; }
    /// <summary>Field holding the event time (timestamp-millis or long epoch milliseconds).</summary>
    public string? TimeField { get; set; }
}

public sealed class LookupDocument
{
    /// <summary>Name of the lookup group; also the suffix of the Redis key.</summary>
    public string? Name { get; set; }
    /// <summary>Event field whose value identifies the entity (e.g. card_id).</summary>
    public string? EntityField { get; set; }
    /// <summary>Hash fields read from <c>{entityField:value}:name</c>.</summary>
    public List<string> Fields { get; set; } = [];
}

public sealed class FeatureDocument
{
    public string? Name { get; set; }
    /// <summary>Event field the feature comes from (exclusive with Lookup).</summary>
    public string? Event { get; set; }
    /// <summary><c>lookupName.field</c> the feature comes from (exclusive with Event).</summary>
    public string? Lookup { get; set; }
    /// <summary>identity (default), log1p, hour_of_day, day_of_week, equals(VALUE), clip(MIN,MAX).</summary>
    public string? Transform { get; set; }
    /// <summary>Value used when the input is missing, null, NaN or stale.</summary>
    public double? Default { get; set; }
}
