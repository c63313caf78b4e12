namespace StreamInference.Core.Features;

/// <summary>
/// Redis key layout shared by the stream (reads and updates) and the batch path (materialization).
/// Every key of one entity starts with the hash tag <c>{field:value}</c>, so in Redis Cluster all of an
/// entity's keys live in one slot and one script can update them atomically.
/// </summary>
public static class FeatureKeys
{
    /// <summary>Hash field holding the epoch-millisecond event time the lookup values were computed as of.</summary>
    public const string AsOfField = "_asof";

    public static string Tag(string field, string entity) => $"{{{field}:{entity}}}";

    /// <summary>Materialized lookup values of one entity.</summary>
    public static string Lookup(LookupSpec lookup, string entity) => $"{Tag(lookup.EntityField, entity)}:{lookup.Name}";

    /// <summary>Window bookkeeping of one entity: watermark and the last applied source offset.</summary>
    public static string WindowMeta(FeaturePlan plan, string entity) => $"{Tag(plan.EntityKeyField, entity)}:{plan.Name}:w";

    /// <summary>Buckets of one series of one entity (hash: bucket index → "count|sum|min|max").</summary>
    public static string Series(FeaturePlan plan, SeriesSpec series, string entity) => $"{Tag(plan.EntityKeyField, entity)}:{plan.Name}:w:{series.Name}";

    /// <summary>
    /// Whether a materialized value computed as of <paramref name="asOfMs"/> may be used for an event at
    /// <paramref name="eventTimeMs"/>: known by then (no future values) and not older than the TTL.
    /// </summary>
    public static bool IsUsable(long asOfMs, long eventTimeMs, long ttlMs) => asOfMs <= eventTimeMs && eventTimeMs - asOfMs <= ttlMs;
}
