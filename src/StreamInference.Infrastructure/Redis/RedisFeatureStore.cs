using System.Globalization;
using StackExchange.Redis;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Redis;

/// <summary>
/// Reads materialized feature values for a whole micro-batch in one pipelined round trip: one HMGET
/// per (event, lookup) queued on an <see cref="IBatch"/> and flushed together. Keys are
/// <c>{entityField:value}:lookup</c>; the braces are a Redis Cluster hash tag, so every hash of one
/// entity lives in the same slot. Missing hashes or fields leave NaN, which the assembler turns into
/// the feature's default (and counts).
/// </summary>
public sealed class RedisFeatureStore : IFeatureStore
{
    private readonly IConnectionMultiplexer _redis;
    private readonly FeaturePlan _plan;
    private readonly RedisValue[][] _fields;
    private Task<RedisValue[]>[] _pending = [];

    public RedisFeatureStore(IConnectionMultiplexer redis, FeaturePlan plan)
    {
        _redis = redis;
        _plan = plan;
        _fields = new RedisValue[plan.Lookups.Count][];
        for (var i = 0; i < plan.Lookups.Count; i++)
        {
            var fields = plan.Lookups[i].Fields;
            _fields[i] = new RedisValue[fields.Count];
            for (var j = 0; j < fields.Count; j++) _fields[i][j] = fields[j];
        }
    }

    /// <summary>The Redis key holding lookup <paramref name="lookup"/> for entity value <paramref name="entity"/>.</summary>
    public static string Key(LookupSpec lookup, string entity) => $"{{{lookup.EntityField}:{entity}}}:{lookup.Name}";

    public async ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken)
    {
        var lookups = _plan.Lookups;
        if (lookups.Count == 0) return;
        var needed = batch.OkCount * lookups.Count;
        if (_pending.Length < needed) _pending = new Task<RedisValue[]>[needed];

        var db = _redis.GetDatabase();
        var round = db.CreateBatch();
        var n = 0;
        for (var k = 0; k < batch.OkCount; k++)
        {
            var row = batch.Rows[k];
            var texts = batch.TextRow(row);
            for (var l = 0; l < lookups.Count; l++)
            {
                var entity = texts[lookups[l].EntityTextSlot];
                _pending[n++] = entity is null
                    ? Task.FromResult(Array.Empty<RedisValue>())
                    : round.HashGetAsync(Key(lookups[l], entity), _fields[l]);
            }
        }
        round.Execute();
        await Task.WhenAll(new ArraySegment<Task<RedisValue[]>>(_pending, 0, n)).WaitAsync(cancellationToken).ConfigureAwait(false);

        n = 0;
        for (var k = 0; k < batch.OkCount; k++)
        {
            var values = batch.LookupRow(batch.Rows[k]);
            for (var l = 0; l < lookups.Count; l++)
            {
                var got = _pending[n].Result;
                _pending[n++] = null!;
                var first = lookups[l].FirstValueSlot;
                for (var j = 0; j < lookups[l].Fields.Count; j++)
                    values[first + j] = j < got.Length ? Parse(got[j]) : double.NaN;
            }
        }
    }

    private static double Parse(RedisValue value)
    {
        if (value.IsNull) return double.NaN;
        if (value.TryParse(out double d)) return d;
        return double.TryParse((string?)value, NumberStyles.Float, CultureInfo.InvariantCulture, out d) ? d : double.NaN;
    }
}
