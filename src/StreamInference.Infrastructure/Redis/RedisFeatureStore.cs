using System.Globalization;
using StackExchange.Redis;
using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Redis;

/// <summary>
/// The streaming side of the feature store, one pipelined round trip per micro-batch:
/// <list type="bullet">
/// <item>per entity in the batch, one script call (<c>WindowUpdate.lua</c>) that returns the entity's
/// window state and applies the batch's events to it atomically, skipping any already applied
/// (same source partition, offset not beyond the last applied) — so redelivery changes nothing;</item>
/// <item>per (lookup, entity), one HMGET of the materialized values and their <c>_asof</c> time.</item>
/// </list>
/// The window features of each event are then computed here by <see cref="WindowEngine"/> replaying the
/// batch's events over the returned state, exactly as the batch path does over history.
/// The state this replay ends with is kept (up to <see cref="CachedEntities"/> entities) under the version
/// token the script stored with it; the next call for the entity sends that token and, when no other writer
/// touched the entity in between (another instance after a rebalance, the batch path), Redis returns only
/// the buckets the new events touch instead of the whole state — the costly part, since an entity's 30-day
/// series can hold hundreds of buckets. Input partitions are keyed by entity, so in steady state an
/// instance is the only writer of its entities and nearly every call is a cache hit.
/// All keys of an entity carry its hash tag (<see cref="FeatureKeys"/>), so Redis Cluster works.
/// </summary>
public sealed class RedisFeatureStore : IFeatureStore
{
    private static readonly string Script = LoadScript();

    private readonly IConnectionMultiplexer _redis;
    private readonly FeaturePlan _plan;
    private readonly WindowEngine _engine;
    private readonly RedisValue[][] _fields;
    private readonly Dictionary<string, List<int>> _groups = new(StringComparer.Ordinal);
    private readonly Stack<List<int>> _spareLists = new();
    private readonly Dictionary<string, Task<RedisValue[]>> _lookupReads = new(StringComparer.Ordinal);
    private readonly List<(string Entity, List<int> Rows, Task<RedisResult> State)> _windowCalls = [];
    private readonly long _expiryMs;
    private readonly Dictionary<string, CachedState> _cache = new(StringComparer.Ordinal);
    private readonly string _tokenPrefix = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)) + "-";
    private long _tokens;

    private sealed record CachedState(string Token, EntityWindowState State);

    /// <param name="cachedEntities">Entities whose window state is kept between batches (0 = none; every
    /// call then reads the whole state from Redis).</param>
    public RedisFeatureStore(IConnectionMultiplexer redis, FeaturePlan plan, int cachedEntities = DefaultCachedEntities)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cachedEntities);
        CachedEntities = cachedEntities;
        _redis = redis;
        _plan = plan;
        _engine = new WindowEngine(plan);
        _fields = new RedisValue[plan.Lookups.Count][];
        for (var i = 0; i < plan.Lookups.Count; i++)
        {
            var fields = plan.Lookups[i].Fields;
            _fields[i] = new RedisValue[fields.Count + 1];
            for (var j = 0; j < fields.Count; j++) _fields[i][j] = fields[j];
            _fields[i][fields.Count] = FeatureKeys.AsOfField;
        }
        _expiryMs = ExpiryMs(plan);
        _cluster = redis.GetServers().Any(server => server.ServerType == ServerType.Cluster);
    }

    private readonly bool _cluster;

    /// <summary>Default bound of the window-state cache (entities; the cache is emptied when it is reached).</summary>
    public const int DefaultCachedEntities = 100_000;

    public int CachedEntities { get; }

    /// <summary>Window-state calls answered without returning the state (the cached state was current).</summary>
    public long CacheHits { get; private set; }

    /// <summary>Window-state calls that returned the whole state.</summary>
    public long CacheMisses { get; private set; }

    /// <summary>How long an idle entity's window keys live: the longest retention plus a day.</summary>
    public static long ExpiryMs(FeaturePlan plan)
    {
        long longest = 0;
        foreach (var s in plan.Series) longest = Math.Max(longest, (s.RetainBuckets + 2) * s.BucketMs);
        return longest + 2 * plan.AllowedLatenessMs + 86_400_000;
    }

    private static string LoadScript()
    {
        using var stream = typeof(RedisFeatureStore).Assembly.GetManifestResourceStream("WindowUpdate.lua")
                           ?? throw new InvalidOperationException("Embedded resource WindowUpdate.lua is missing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public async ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken)
    {
        var lookups = _plan.Lookups;
        var hasWindows = _plan.Series.Count > 0;
        if (lookups.Count == 0 && !hasWindows) return;

        var round = _redis.GetDatabase().CreateBatch();
        if (hasWindows) QueueWindowCalls(batch, round);
        for (var k = 0; k < batch.OkCount; k++)
        {
            var texts = batch.TextRow(batch.Rows[k]);
            for (var l = 0; l < lookups.Count; l++)
            {
                var entity = texts[lookups[l].EntityTextSlot];
                if (entity is null) continue;
                var key = FeatureKeys.Lookup(lookups[l], entity);
                if (!_lookupReads.ContainsKey(key)) _lookupReads[key] = round.HashGetAsync(key, _fields[l]);
            }
        }
        round.Execute();
        try
        {
            foreach (var (_, _, task) in _windowCalls) await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            foreach (var task in _lookupReads.Values) await task.WaitAsync(cancellationToken).ConfigureAwait(false);

            foreach (var (entity, rows, task) in _windowCalls) Replay(batch, entity, rows, task.Result);
            FillLookups(batch);
        }
        finally
        {
            foreach (var (_, rows, _) in _windowCalls) { rows.Clear(); _spareLists.Push(rows); }
            _windowCalls.Clear();
            _groups.Clear();
            _lookupReads.Clear();
        }
    }

    private void QueueWindowCalls(EventBatch batch, IBatch round)
    {
        // Group the batch's clean rows by entity, keeping arrival order within each entity.
        for (var k = 0; k < batch.OkCount; k++)
        {
            var row = batch.Rows[k];
            var entity = batch.EntityKeys[row]!;
            if (!_groups.TryGetValue(entity, out var rows))
            {
                rows = _spareLists.Count > 0 ? _spareLists.Pop() : [];
                _groups[entity] = rows;
            }
            rows.Add(row);
        }

        // Up to EntitiesPerCall entities per script call on a standalone server: fewer calls, while one
        // call stays short (a script blocks the server; other clients must not wait long). In a cluster
        // a script may only touch one slot's keys, so one entity (one hash tag) per call.
        var perCall = _cluster ? 1 : EntitiesPerCall;
        var pending = new List<(string Entity, List<int> Rows)>(perCall);
        var keys = new List<RedisKey>(perCall * (1 + _plan.Series.Count));
        var args = new List<RedisValue>(256);
        var remaining = _groups.Count;
        foreach (var (entity, rows) in _groups)
        {
            if (pending.Count == 0) Header(args, Math.Min(perCall, remaining));
            AddEntity(entity, rows, batch, keys, args);
            pending.Add((entity, rows));
            remaining--;
            if (pending.Count < perCall && remaining > 0) continue;
            var call = round.ScriptEvaluateAsync(Script, [.. keys], [.. args]);
            for (var e = 0; e < pending.Count; e++) _windowCalls.Add((pending[e].Entity, pending[e].Rows, Pick(call, e)));
            pending.Clear();
            keys.Clear();
            args.Clear();
        }
    }

    /// <summary>Entities per script call on a standalone server (each call runs ~0.1 ms per event).</summary>
    public const int EntitiesPerCall = 16;

    private static async Task<RedisResult> Pick(Task<RedisResult> call, int index) => ((RedisResult[])(await call.ConfigureAwait(false))!)[index];

    private void Header(List<RedisValue> args, int entities)
    {
        args.Add(_plan.Series.Count);
        args.Add(_plan.AllowedLatenessMs);
        args.Add(_expiryMs);
        args.Add(entities);
        foreach (var spec in _plan.Series) { args.Add(spec.BucketMs); args.Add(spec.RetainBuckets); }
    }

    private void AddEntity(string entity, List<int> rows, EventBatch batch, List<RedisKey> keys, List<RedisValue> args)
    {
        var series = _plan.Series;
        keys.Add(FeatureKeys.WindowMeta(_plan, entity));
        foreach (var spec in series) keys.Add(FeatureKeys.Series(_plan, spec, entity));
        args.Add(_cache.TryGetValue(entity, out var cached) ? cached.Token : "");
        args.Add(_tokenPrefix + (++_tokens).ToString("x", CultureInfo.InvariantCulture));
        args.Add(rows.Count);
        foreach (var row in rows)
        {
            var record = batch.Records[row];
            args.Add(record.Partition.SourceId);
            args.Add(record.Offset);
            args.Add(batch.EventTimesMs[row]);
            var numerics = batch.NumericRow(row);
            foreach (var spec in series)
            {
                var v = spec.ValueSlot < 0 ? 1.0 : numerics[spec.ValueSlot];
                args.Add(WindowEngine.IsAggregatable(v) ? v.ToString("R", CultureInfo.InvariantCulture) : "");
            }
        }
    }

    /// <summary>
    /// Rebuilds the entity's state as it was before the batch and replays the batch's events in order:
    /// each event's windows are read first, then the event is added (unless late or already applied).
    /// The same rules as the script, so the state here ends equal to the state in Redis.
    /// </summary>
    private void Replay(EventBatch batch, string entity, List<int> rows, RedisResult result)
    {
        var parts = (RedisResult[])result!;
        // Out of the cache while it changes: should anything below throw, no stale entry stays behind.
        _cache.Remove(entity, out var cached);
        EntityWindowState state;
        if ((string?)parts[4] == "1")
        {
            state = cached?.State ?? throw new InvalidOperationException($"Redis answered for entity '{entity}' as if its cached window state were current, but none is cached.");
            CacheHits++;
        }
        else
        {
            state = _engine.NewState();
            for (var i = 0; i < _plan.Series.Count; i++)
                ParseBuckets((RedisResult[])parts[5 + i]!, state.Series[i]);
            CacheMisses++;
        }
        var wmText = (string?)parts[0];
        state.Watermark = string.IsNullOrEmpty(wmText) ? EntityWindowState.NoWatermark : (long)double.Parse(wmText, CultureInfo.InvariantCulture);
        var src = (string?)parts[1];
        if (string.IsNullOrEmpty(src)) src = null;
        var offText = (string?)parts[2];
        long? off = string.IsNullOrEmpty(offText) ? null : (long)double.Parse(offText, CultureInfo.InvariantCulture);

        foreach (var row in rows)
        {
            var record = batch.Records[row];
            var t = batch.EventTimesMs[row];
            _engine.Read(state, state.Watermark, t, batch.WindowRow(row));
            var source = record.Partition.SourceId;
            if (src == source && off is { } last && record.Offset <= last)
            {
                batch.RedeliveredEvents++;
                continue;
            }
            src = source;
            off = record.Offset;
            if (_engine.IsLate(state.Watermark, t)) batch.LateEvents++;
            else _engine.Add(state, t, batch.NumericRow(row));
        }

        // The state now equals the one in Redis, under the token the script left in the meta hash.
        var token = (string?)parts[3];
        if (CachedEntities == 0 || string.IsNullOrEmpty(token)) return;
        _engine.Trim(state);
        if (_cache.Count >= CachedEntities) _cache.Clear();
        _cache[entity] = new CachedState(token, state);
    }

    /// <summary>Parses a series hash (bucket → "count|sum|min|max") into <paramref name="series"/>.</summary>
    public static void ParseBuckets(RedisResult[] flat, SeriesState series)
    {
        for (var i = 0; i + 1 < flat.Length; i += 2)
        {
            var bucket = long.Parse((string)flat[i]!, CultureInfo.InvariantCulture);
            series.Buckets[bucket] = ParseStats((string)flat[i + 1]!);
        }
    }

    public static BucketStats ParseStats(string text)
    {
        var parts = text.Split('|');
        if (parts.Length != 4) throw new FormatException($"Window bucket value '{text}' is not count|sum|min|max.");
        return new BucketStats
        {
            Count = (long)double.Parse(parts[0], CultureInfo.InvariantCulture),
            Sum = double.Parse(parts[1], CultureInfo.InvariantCulture),
            Min = double.Parse(parts[2], CultureInfo.InvariantCulture),
            Max = double.Parse(parts[3], CultureInfo.InvariantCulture),
        };
    }

    public static string FormatStats(in BucketStats s) => string.Create(CultureInfo.InvariantCulture,
        $"{s.Count}|{s.Sum:R}|{s.Min:R}|{s.Max:R}");

    private void FillLookups(EventBatch batch)
    {
        var lookups = _plan.Lookups;
        for (var k = 0; k < batch.OkCount; k++)
        {
            var row = batch.Rows[k];
            var texts = batch.TextRow(row);
            var values = batch.LookupRow(row);
            var t = batch.EventTimesMs[row];
            for (var l = 0; l < lookups.Count; l++)
            {
                var spec = lookups[l];
                var first = spec.FirstValueSlot;
                var n = spec.Fields.Count;
                values.Slice(first, n).Fill(double.NaN);
                var entity = texts[spec.EntityTextSlot];
                if (entity is null) continue;
                var got = _lookupReads[FeatureKeys.Lookup(spec, entity)].Result;
                if (got.Length <= n || got[n].IsNull) continue;
                var asOf = Parse(got[n]);
                if (!double.IsFinite(asOf) || !FeatureKeys.IsUsable((long)asOf, t, spec.TtlMs))
                {
                    batch.StaleLookups++;
                    continue;
                }
                for (var j = 0; j < n; j++) values[first + j] = Parse(got[j]);
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
