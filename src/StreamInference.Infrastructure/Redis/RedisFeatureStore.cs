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
/// The state this replay ends with equals the one left in Redis; it is kept (up to
/// <see cref="CachedEntities"/> entities) with the version token the call stored beside it. For an entity
/// whose state is cached, the next batch is replayed here first and only the result goes to Redis
/// (<c>WindowWrite.lua</c>: the changed buckets, the deleted ones and the meta fields), written only if
/// the token is still the stored one. Otherwise — another instance wrote the entity after a rebalance,
/// or the batch path materialized it — nothing is written, and a second round trip falls back to
/// <c>WindowUpdate.lua</c> for those entities. Input partitions are keyed by entity, so in steady state
/// an instance is the only writer of its entities and almost every entity takes the short path.
/// All keys of an entity carry its hash tag (<see cref="FeatureKeys"/>), so Redis Cluster works.
/// </summary>
public sealed class RedisFeatureStore : IFeatureStore
{
    private static readonly string Script = LoadScript("WindowUpdate.lua");
    private static readonly string WriteScript = LoadScript("WindowWrite.lua");

    private readonly IConnectionMultiplexer _redis;
    private readonly FeaturePlan _plan;
    private readonly WindowEngine _engine;
    private readonly RedisValue[][] _fields;
    private readonly Dictionary<string, List<int>> _groups = new(StringComparer.Ordinal);
    private readonly Stack<List<int>> _spareLists = new();
    private readonly Dictionary<string, Task<RedisValue[]>> _lookupReads = new(StringComparer.Ordinal);
    private readonly List<(string Entity, List<int> Rows, Task<RedisResult> State)> _windowCalls = [];
    private readonly List<(string Entity, List<int> Rows, Task<RedisResult> Written, Pending Update)> _writeCalls = [];
    private readonly List<(string Entity, List<int> Rows)> _refused = [];
    private readonly HashSet<(int Series, long Bucket)> _touched = [];
    // The buckets each cached entity's replay changed, one range per entity (one list for the batch).
    private readonly List<(int Series, long Bucket)> _touchedBuckets = [];
    private readonly long _expiryMs;
    private readonly Dictionary<string, CachedState> _cache = new(StringComparer.Ordinal);
    private readonly string _tokenPrefix = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)) + "-";
    private long _tokens;

    /// <summary>An entity's state as in Redis after this store's last call, and what identifies it there.</summary>
    private sealed record CachedState(string Token, EntityWindowState State, string? Source, long? Offset, long ExpirySetAtMs);

    /// <summary>
    /// How often a cached entity's keys get their expiry pushed back (PEXPIRE), besides when a series key is
    /// created. Expiry is a day longer than the longest retention, so an hour late is harmless, and most
    /// writes skip half of their commands.
    /// </summary>
    private const long ExpiryRefreshMs = 3_600_000;

    /// <summary>A locally computed update waiting for Redis to accept it.</summary>
    /// <summary><see cref="TouchedFrom"/>/<see cref="TouchedCount"/>: the entity's range in <c>_touchedBuckets</c>.</summary>
    private sealed record Pending(CachedState Next, string Expected, bool Applied, int TouchedFrom, int TouchedCount, int Redelivered, int Late,
        bool RefreshExpiry, long EmptySeriesBefore);

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

    /// <summary>Called after each batch with its entity updates: computed here from the cached state, and read from Redis.</summary>
    public Action<long, long>? OnUpdated { get; init; }

    private long _reads;

    /// <summary>Entity updates computed here from the cached state and accepted by Redis.</summary>
    public long CacheHits { get; private set; }

    /// <summary>Entity updates that read the whole state from Redis (nothing cached, or the cache was outdated).</summary>
    public long CacheMisses { get; private set; }

    /// <summary>How long an idle entity's window keys live: the longest retention plus a day.</summary>
    public static long ExpiryMs(FeaturePlan plan)
    {
        long longest = 0;
        foreach (var s in plan.Series) longest = Math.Max(longest, (s.RetainBuckets + 2) * s.BucketMs);
        return longest + 2 * plan.AllowedLatenessMs + 86_400_000;
    }

    private static string LoadScript(string name) => EmbeddedResources.Text(name);

    public async ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken)
    {
        var lookups = _plan.Lookups;
        var hasWindows = _plan.Series.Count > 0;
        if (lookups.Count == 0 && !hasWindows) return;

        // Counted afresh on every attempt: the caller retries a whole batch after a failure.
        batch.RedeliveredEvents = 0;
        batch.LateEvents = 0;
        batch.StaleLookups = 0;
        _reads = 0;
        long cached = 0;
        try
        {
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

            foreach (var (_, _, task, _) in _writeCalls) await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            foreach (var (_, _, task) in _windowCalls) await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            foreach (var task in _lookupReads.Values) await task.WaitAsync(cancellationToken).ConfigureAwait(false);

            foreach (var (entity, rows, task, update) in _writeCalls)
            {
                if ((int)task.Result == 1)
                {
                    batch.RedeliveredEvents += update.Redelivered;
                    batch.LateEvents += update.Late;
                    Keep(entity, update.Next);
                    cached++;
                }
                else
                {
                    _refused.Add((entity, rows));
                }
            }
            foreach (var (entity, rows, task) in _windowCalls) Replay(batch, entity, rows, task.Result);

            if (_refused.Count > 0)
            {
                // Someone else changed these entities: read their state as the script applies the events.
                _windowCalls.Clear();
                var again = _redis.GetDatabase().CreateBatch();
                QueueUpdateCalls(_refused, batch, again);
                again.Execute();
                foreach (var (_, _, task) in _windowCalls) await task.WaitAsync(cancellationToken).ConfigureAwait(false);
                foreach (var (entity, rows, task) in _windowCalls) Replay(batch, entity, rows, task.Result);
            }
            FillLookups(batch);
            CacheHits += cached;
            CacheMisses += _reads;
            OnUpdated?.Invoke(cached, _reads);
        }
        finally
        {
            foreach (var rows in _groups.Values) { rows.Clear(); _spareLists.Push(rows); }
            _windowCalls.Clear();
            _writeCalls.Clear();
            _refused.Clear();
            _touchedBuckets.Clear();
            _groups.Clear();
            _lookupReads.Clear();
        }
    }

    private void Keep(string entity, CachedState state)
    {
        if (CachedEntities == 0 || string.IsNullOrEmpty(state.Token)) return;
        _engine.Trim(state.State);
        if (_cache.Count >= CachedEntities) _cache.Clear();
        _cache[entity] = state;
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

        var cold = new List<(string Entity, List<int> Rows)>();
        var warm = new List<(string Entity, List<int> Rows, Pending Update)>();
        foreach (var (entity, rows) in _groups)
        {
            // Out of the cache while it changes: whatever happens next, no stale entry stays behind.
            if (_cache.Remove(entity, out var cached)) warm.Add((entity, rows, Advance(batch, cached, rows)));
            else cold.Add((entity, rows));
        }
        QueueWriteCalls(warm, round);
        QueueUpdateCalls(cold, batch, round);
    }

    /// <summary>
    /// Replays the entity's events over its cached state, writing each event's window values into the batch,
    /// and returns the state Redis should hold afterwards (not yet written).
    /// </summary>
    private Pending Advance(EventBatch batch, CachedState cached, List<int> rows)
    {
        var state = cached.State;
        // A series without buckets has no key in Redis: a write that creates it must also set its expiry.
        long empty = 0;
        for (var s = 0; s < state.Series.Length && s < 64; s++)
            if (state.Series[s].Buckets.Count == 0) empty |= 1L << s;
        var touchedFrom = _touchedBuckets.Count;
        var (src, off, applied, redelivered, late) = ReplayRows(batch, state, cached.Source, cached.Offset, rows, _touchedBuckets);
        var now = Environment.TickCount64;
        var refresh = applied && (now - cached.ExpirySetAtMs >= ExpiryRefreshMs || state.Series.Length > 64);
        return new Pending(new CachedState(applied ? NewToken() : cached.Token, state, src, off, refresh ? now : cached.ExpirySetAtMs),
            cached.Token, applied, touchedFrom, _touchedBuckets.Count - touchedFrom, redelivered, late, refresh, empty);
    }

    private string NewToken() => _tokenPrefix + (++_tokens).ToString("x", CultureInfo.InvariantCulture);

    private void QueueWriteCalls(List<(string Entity, List<int> Rows, Pending Update)> entities, IBatch round)
    {
        var perCall = _cluster ? 1 : EntitiesPerCall;
        var series = _plan.Series;
        var keys = new List<RedisKey>(perCall * (1 + series.Count));
        var args = new List<RedisValue>(256);
        var pending = new List<(string Entity, List<int> Rows, Pending Update)>(perCall);
        for (var i = 0; i < entities.Count; i++)
        {
            if (pending.Count == 0)
            {
                args.Add(series.Count);
                args.Add(_expiryMs);
                args.Add(Math.Min(perCall, entities.Count - i));
            }
            var (entity, rows, update) = entities[i];
            var state = update.Next.State;
            keys.Add(FeatureKeys.WindowMeta(_plan, entity));
            foreach (var spec in series) keys.Add(FeatureKeys.Series(_plan, spec, entity));
            args.Add(update.Expected);
            args.Add(update.Next.Token);
            args.Add(update.Applied ? "1" : "0");
            args.Add(state.Watermark == EntityWindowState.NoWatermark ? "" : state.Watermark.ToString(CultureInfo.InvariantCulture));
            args.Add(update.Next.Source ?? "");
            args.Add(update.Next.Offset is { } o ? o.ToString(CultureInfo.InvariantCulture) : "");
            args.Add(update.RefreshExpiry ? "1" : "0");
            for (var s = 0; s < series.Count; s++)
            {
                // Buckets below the retention bound are neither written nor kept (as WindowUpdate.lua does).
                var from = _engine.RetainFrom(series[s], state.Watermark);
                var buckets = state.Series[s].Buckets;
                var countAt = args.Count;
                args.Add(0);
                var n = 0;
                _touched.Clear();
                foreach (var (ts, bucket) in System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_touchedBuckets).Slice(update.TouchedFrom, update.TouchedCount))
                {
                    if (ts != s || bucket < from || !_touched.Add((ts, bucket))) continue;
                    args.Add(bucket);
                    args.Add(FormatStats(buckets[bucket]));
                    n++;
                }
                args[countAt] = n;
                countAt = args.Count;
                args.Add(0);
                var m = 0;
                foreach (var bucket in buckets.Keys)
                {
                    if (bucket >= from) continue;
                    args.Add(bucket);
                    m++;
                }
                args[countAt] = m;
                args.Add(update.RefreshExpiry || (n > 0 && (update.EmptySeriesBefore & (1L << s)) != 0) ? "1" : "0");
            }
            pending.Add((entity, rows, update));
            if (pending.Count < perCall && i < entities.Count - 1) continue;
            var call = round.ScriptEvaluateAsync(WriteScript, [.. keys], [.. args]);
            for (var e = 0; e < pending.Count; e++) _writeCalls.Add((pending[e].Entity, pending[e].Rows, Pick(call, e), pending[e].Update));
            pending.Clear();
            keys.Clear();
            args.Clear();
        }
    }

    private void QueueUpdateCalls(List<(string Entity, List<int> Rows)> entities, EventBatch batch, IBatch round)
    {
        // Up to EntitiesPerCall entities per script call on a standalone server: fewer calls, while one
        // call stays short (a script blocks the server; other clients must not wait long). In a cluster
        // a script may only touch one slot's keys, so one entity (one hash tag) per call.
        var perCall = _cluster ? 1 : EntitiesPerCall;
        var pending = new List<(string Entity, List<int> Rows)>(perCall);
        var keys = new List<RedisKey>(perCall * (1 + _plan.Series.Count));
        var args = new List<RedisValue>(256);
        for (var i = 0; i < entities.Count; i++)
        {
            var (entity, rows) = entities[i];
            if (pending.Count == 0) Header(args, Math.Min(perCall, entities.Count - i));
            AddEntity(entity, rows, batch, keys, args);
            pending.Add((entity, rows));
            if (pending.Count < perCall && i < entities.Count - 1) continue;
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
        args.Add(NewToken());
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
        var state = _engine.NewState();
        var wmText = (string?)parts[0];
        if (!string.IsNullOrEmpty(wmText)) state.Watermark = (long)double.Parse(wmText, CultureInfo.InvariantCulture);
        var src = (string?)parts[1];
        if (string.IsNullOrEmpty(src)) src = null;
        var offText = (string?)parts[2];
        long? off = string.IsNullOrEmpty(offText) ? null : (long)double.Parse(offText, CultureInfo.InvariantCulture);
        for (var i = 0; i < _plan.Series.Count; i++)
            ParseBuckets((RedisResult[])parts[4 + i]!, state.Series[i]);
        _reads++;

        var (newSrc, newOff, _, redelivered, late) = ReplayRows(batch, state, src, off, rows, touched: null);
        batch.RedeliveredEvents += redelivered;
        batch.LateEvents += late;
        // The state now equals the one in Redis, under the token the script left in the meta hash.
        // WindowUpdate.lua set the expiry of every key when it applied events; when it did not, an earlier
        // write did, recently enough for the refresh interval.
        Keep(entity, new CachedState((string?)parts[3] ?? "", state, newSrc, newOff, Environment.TickCount64));
    }

    /// <summary>
    /// The stream's replay of one entity's events over its state: each event's windows are read first,
    /// then the event is added unless it is late or was already applied (same source, offset not beyond
    /// the last applied one) — Applied says whether any was. <paramref name="touched"/>, when given, collects the buckets it changes, for
    /// the write that follows.
    /// </summary>
    private (string? Source, long? Offset, bool Applied, int Redelivered, int Late) ReplayRows(EventBatch batch, EntityWindowState state, string? src, long? off,
        List<int> rows, List<(int Series, long Bucket)>? touched)
    {
        var redelivered = 0;
        var late = 0;
        var applied = false;
        var series = _plan.Series;
        foreach (var row in rows)
        {
            var record = batch.Records[row];
            var t = batch.EventTimesMs[row];
            _engine.Read(state, state.Watermark, t, batch.WindowRow(row));
            var source = record.Partition.SourceId;
            if (src == source && off is { } last && record.Offset <= last)
            {
                redelivered++;
                continue;
            }
            src = source;
            off = record.Offset;
            applied = true;
            if (_engine.IsLate(state.Watermark, t))
            {
                late++;
                continue;
            }
            var numerics = batch.NumericRow(row);
            _engine.Add(state, t, numerics);
            if (touched is null) continue;
            for (var s = 0; s < series.Count; s++)
            {
                var value = series[s].ValueSlot < 0 ? 1.0 : numerics[series[s].ValueSlot];
                if (WindowEngine.IsAggregatable(value)) touched.Add((s, WindowEngine.BucketOf(series[s], t)));
            }
        }
        return (src, off, applied, redelivered, late);
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
