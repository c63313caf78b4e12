using System.Collections.Concurrent;
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
/// the token is still the stored one. Input partitions are keyed by entity, so in steady state an
/// instance is the only writer of its entities and almost every entity takes this path.
/// <para>
/// Write-behind (the default): the batch waits only for what it reads — the lookups and the state of
/// entities not cached — and is scored on the cached state while its writes run; the writes are sent
/// after the reads in the same pipeline, so they never delay them. <see cref="PersistAsync"/> (the
/// pipeline's persist stage, batch by batch in order) waits for the writes, and the batch's offsets
/// complete only after it returns. A write Redis refused (another writer changed the entity since it was
/// cached: another instance after a rebalance, or the batch path) or whose outcome is unknown (a timeout)
/// is re-applied with <c>WindowUpdate.lua</c>, which skips what was already applied, so Redis ends with
/// every event exactly once; the events of that batch were scored on the cached state (counted as
/// conflicts), and the entity is read afresh from the next batch on, once every write sent before has
/// settled (so no re-application can overtake an earlier one). Without write-behind the batch waits
/// for its writes and a refused entity is re-read before scoring, as before.
/// </para>
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
    private readonly bool _cluster;
    private readonly bool _writeBehind;
    private readonly long _expiryMs;
    private readonly string _tokenPrefix = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)) + "-";
    private long _tokens;

    // The batch stage's side (FetchAsync): one batch at a time.
    private readonly Dictionary<string, List<int>> _groups = new(StringComparer.Ordinal);
    private readonly Stack<List<int>> _spareLists = new();
    private readonly Dictionary<string, Task<RedisValue[]>> _lookupReads = new(StringComparer.Ordinal);
    private readonly List<(string Entity, List<int> Rows, RedisKey[] Keys, Task<RedisResult> State)> _windowCalls = [];
    private readonly List<(string Entity, List<int> Rows, RedisKey[] Keys)> _cold = [];
    private readonly HashSet<(int Series, long Bucket)> _touched = [];
    // The buckets each cached entity's replay changed, one range per entity (one list for the batch).
    private readonly List<(int Series, long Bucket)> _touchedBuckets = [];
    private readonly Dictionary<string, CachedState> _cache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string>[] _lookupKeys;
    // The batch (and its fill) whose cached entities were advanced: a retry of FetchAsync for it must not advance them again.
    private EventBatch? _advanced;
    private long _advancedGeneration;
    private WriteRound? _round;        // that batch's writes, until sent
    private WriteRound? _lastSent;     // the latest round sent: waiting for it waits for every write before it
    private int _warmRedelivered;
    private int _warmLate;

    // Between the two sides: rounds sent and not yet settled, in the order sent; entities whose cached state is
    // outdated; a request to drop the whole cache (partitions were assigned).
    private readonly ConcurrentQueue<WriteRound> _unsettled = new();
    private readonly ConcurrentQueue<string> _outdated = new();
    private int _invalidateAll;

    /// <summary>An entity's state as in Redis after this store's last call, and what identifies it there.</summary>
    /// <summary><see cref="Keys"/>: the entity's meta and series keys, built once (key strings were a fifth of the bytes allocated per event).</summary>
    private sealed record CachedState(string Token, EntityWindowState State, string? Source, long? Offset, long ExpirySetAtMs, RedisKey[] Keys);

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

    /// <summary>One cached entity's conditional write: its rows in the batch, the reply, and whether it is settled.</summary>
    private sealed class EntityWrite(string entity, List<int> rows, Pending update)
    {
        public string Entity => entity;
        public List<int> Rows => rows;
        public Pending Update => update;
        public Task<RedisResult>? Written { get; set; }
        public bool Settled { get; set; }
    }

    /// <summary>The conditional writes of one batch's cached entities: prepared script calls, then their replies.</summary>
    private sealed class WriteRound(EventBatch batch, long generation)
    {
        public EventBatch Batch => batch;
        public long Generation => generation;
        public List<EntityWrite> Writes { get; } = [];
        public List<(RedisKey[] Keys, RedisValue[] Args, int First, int Count)> Calls { get; } = [];
        public TaskCompletionSource Settled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public bool Belongs(EventBatch b) => ReferenceEquals(b, batch) && b.Generation == generation;
    }

    /// <param name="cachedEntities">Entities whose window state is kept between batches (0 = none; every
    /// call then reads the whole state from Redis).</param>
    /// <param name="writeBehind">Score on the cached state while its writes run (see the class remarks); false:
    /// wait for the writes before the batch goes on.</param>
    public RedisFeatureStore(IConnectionMultiplexer redis, FeaturePlan plan, int cachedEntities = DefaultCachedEntities, bool writeBehind = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cachedEntities);
        CachedEntities = cachedEntities;
        _redis = redis;
        _plan = plan;
        _writeBehind = writeBehind;
        _engine = new WindowEngine(plan);
        _fields = new RedisValue[plan.Lookups.Count][];
        _lookupKeys = [.. plan.Lookups.Select(_ => new Dictionary<string, string>(StringComparer.Ordinal))];
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

    /// <summary>Default bound of the window-state cache (entities; the cache is emptied when it is reached).</summary>
    public const int DefaultCachedEntities = 100_000;

    public int CachedEntities { get; }

    /// <summary>
    /// Called with entity updates as they settle: computed here from the cached state and accepted by Redis
    /// (cached), read from Redis (read), refused or of unknown outcome and re-applied from Redis's state (conflicts).
    /// From the batch stage and the persist stage.
    /// </summary>
    public Action<long, long, long>? OnUpdated { get; init; }

    private long _cacheHits;
    private long _cacheMisses;
    private long _conflicts;

    /// <summary>Entity updates computed here from the cached state and accepted by Redis.</summary>
    public long CacheHits => Interlocked.Read(ref _cacheHits);

    /// <summary>Entity updates that read the whole state from Redis (nothing cached, or the cache was outdated).</summary>
    public long CacheMisses => Interlocked.Read(ref _cacheMisses);

    /// <summary>Cached updates Redis refused (another writer changed the entity) or whose outcome was unknown, re-applied from Redis's state.</summary>
    public long Conflicts => Interlocked.Read(ref _conflicts);

    /// <summary>How long an idle entity's window keys live: the longest retention plus a day.</summary>
    public static long ExpiryMs(FeaturePlan plan)
    {
        long longest = 0;
        foreach (var s in plan.Series) longest = Math.Max(longest, (s.RetainBuckets + 2) * s.BucketMs);
        return longest + 2 * plan.AllowedLatenessMs + 86_400_000;
    }

    private static string LoadScript(string name) => EmbeddedResources.Text(name);

    /// <summary>
    /// Drops every cached entity before the next batch (after the writes in flight settle): call when partitions
    /// are assigned, since another instance may have written their entities since this one last did. Any thread.
    /// </summary>
    public void InvalidateCache() => Volatile.Write(ref _invalidateAll, 1);

    public async ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken)
    {
        var lookups = _plan.Lookups;
        var hasWindows = _plan.Series.Count > 0;
        if (lookups.Count == 0 && !hasWindows) return;

        var first = !ReferenceEquals(_advanced, batch) || _advancedGeneration != batch.Generation;
        if (first && hasWindows)
        {
            // Without write-behind this batch settles its own writes inline, so every earlier round must be settled
            // first (one a degraded fetch left to the persist stage): re-applications must not overtake each other.
            if (!_writeBehind && _lastSent is { } earlier) await earlier.Settled.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            await DropOutdatedAsync(batch.OkCount, cancellationToken).ConfigureAwait(false);
            Advance(batch);
        }
        // Counted afresh on every attempt (the caller retries a whole batch after a failure); the cached
        // entities' counts come from their replay, which runs once.
        batch.RedeliveredEvents = _warmRedelivered;
        batch.LateEvents = _warmLate;
        batch.StaleLookups = 0;
        long reads = 0;
        try
        {
            var round = _redis.GetDatabase().CreateBatch();
            QueueUpdateCalls(_cold, batch, round, _windowCalls);
            for (var k = 0; k < batch.OkCount; k++)
            {
                var texts = batch.TextRow(batch.Rows[k]);
                for (var l = 0; l < lookups.Count; l++)
                {
                    var entity = texts[lookups[l].EntityTextSlot];
                    if (entity is null) continue;
                    var key = LookupKey(l, entity);
                    if (!_lookupReads.ContainsKey(key)) _lookupReads[key] = round.HashGetAsync(key, _fields[l]);
                }
            }
            // The writes go after the reads: Redis answers the reads first, and the batch goes on while it runs the writes.
            var sent = Send(round);
            round.Execute();

            foreach (var (_, _, _, task) in _windowCalls) await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            foreach (var task in _lookupReads.Values) await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            foreach (var (entity, rows, keys, task) in _windowCalls) Replay(batch, entity, rows, keys, task.Result);
            reads = _windowCalls.Count;
            FillLookups(batch);
            // The cold entities are read and kept: a retry must not read them again (they would count as redelivered).
            _cold.Clear();
            (_warmRedelivered, _warmLate) = (batch.RedeliveredEvents, batch.LateEvents);
            Count(0, reads, 0);
            if (!_writeBehind && (sent ?? _lastSent) is { } own && own.Belongs(batch))
                await SettleAsync(own, batch, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _windowCalls.Clear();
            _lookupReads.Clear();
        }
    }

    /// <summary>
    /// Waits until the batch's window-state writes are settled in Redis (accepted, or re-applied from Redis's
    /// state); the batch's offsets must not complete before. Batches in the order they were fetched; the caller
    /// retries a failure (what settled stays settled).
    /// </summary>
    public async ValueTask PersistAsync(EventBatch batch, CancellationToken cancellationToken)
    {
        if (_unsettled.TryPeek(out var round) && round.Belongs(batch)) await SettleAsync(round, null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The batch's writes could not be settled in time (Defaults policy): its events stay missing from their
    /// entities' aggregates where Redis did not take them, and those entities are read afresh.
    /// </summary>
    public void Abandon(EventBatch batch)
    {
        if (!_unsettled.TryPeek(out var round) || !round.Belongs(batch)) return;
        foreach (var write in round.Writes)
            if (!write.Settled) _outdated.Enqueue(write.Entity);
        Finish(round);
    }

    private WriteRound? Send(IBatch redis)
    {
        if (_round is not { } round) return null;
        _round = null;
        foreach (var (keys, args, firstWrite, count) in round.Calls)
        {
            var call = redis.ScriptEvaluateAsync(WriteScript, keys, args);
            for (var e = 0; e < count; e++) round.Writes[firstWrite + e].Written = Pick(call, e);
        }
        round.Calls.Clear();
        _unsettled.Enqueue(round);
        _lastSent = round;
        return round;
    }

    /// <summary>
    /// Settles one round: each write Redis accepted is done; one it refused, or whose reply was an error, is
    /// re-applied with WindowUpdate.lua (idempotent). <paramref name="replayInto"/> (no write-behind): the batch
    /// is not scored yet, so the re-read entities' windows are recomputed into it and their state is kept.
    /// </summary>
    private async Task SettleAsync(WriteRound round, EventBatch? replayInto, CancellationToken ct)
    {
        long accepted = 0;
        List<EntityWrite>? retry = null;   // almost always none
        foreach (var write in round.Writes)
        {
            if (write.Settled) continue;
            try
            {
                if ((int)await write.Written!.WaitAsync(ct).ConfigureAwait(false) == 1)
                {
                    write.Settled = true;
                    accepted++;
                    continue;
                }
            }
            catch (Exception) when (!ct.IsCancellationRequested)
            {
                // Timed out or the connection dropped: it may or may not have been applied; re-applying is safe.
            }
            (retry ??= []).Add(write);
        }
        Count(accepted, 0, 0);
        if (retry is not null)
        {
            var calls = new List<(string Entity, List<int> Rows, RedisKey[] Keys, Task<RedisResult> State)>();
            var redis = _redis.GetDatabase().CreateBatch();
            QueueUpdateCalls([.. retry.Select(w => (w.Entity, w.Rows, w.Update.Next.Keys))], round.Batch, redis, calls);
            redis.Execute();
            foreach (var (_, _, _, task) in calls) await task.WaitAsync(ct).ConfigureAwait(false);
            for (var i = 0; i < retry.Count; i++)
            {
                var write = retry[i];
                if (replayInto is not null)
                {
                    // Its windows were computed from an outdated state: recompute them from Redis's.
                    replayInto.RedeliveredEvents -= write.Update.Redelivered;
                    replayInto.LateEvents -= write.Update.Late;
                    _cache.Remove(write.Entity);
                    Replay(replayInto, write.Entity, write.Rows, write.Update.Next.Keys, calls[i].State.Result);
                    (_warmRedelivered, _warmLate) = (replayInto.RedeliveredEvents, replayInto.LateEvents);
                }
                else
                {
                    _outdated.Enqueue(write.Entity);
                }
                write.Settled = true;
            }
            Count(0, 0, retry.Count);
        }
        Finish(round);
    }

    private void Finish(WriteRound round)
    {
        if (_unsettled.TryPeek(out var head) && ReferenceEquals(head, round)) _unsettled.TryDequeue(out _);
        round.Settled.TrySetResult();
    }

    private void Count(long cached, long read, long conflicts)
    {
        if (cached > 0) Interlocked.Add(ref _cacheHits, cached);
        if (read > 0) Interlocked.Add(ref _cacheMisses, read);
        if (conflicts > 0) Interlocked.Add(ref _conflicts, conflicts);
        if (cached > 0 || read > 0 || conflicts > 0) OnUpdated?.Invoke(cached, read, conflicts);
    }

    /// <summary>
    /// Before a batch is advanced: drops the cached entities known to be outdated, everything when asked to or
    /// when the batch could overflow the cache — each only once every write sent before has settled, so that a
    /// re-read (which applies the batch's events) cannot overtake the re-application of an earlier one.
    /// </summary>
    private async ValueTask DropOutdatedAsync(int incoming, CancellationToken ct)
    {
        var all = Volatile.Read(ref _invalidateAll) == 1 || (_cache.Count > 0 && _cache.Count + incoming > CachedEntities);
        if (!all && _outdated.IsEmpty) return;
        if (_lastSent is { } last) await last.Settled.Task.WaitAsync(ct).ConfigureAwait(false);
        if (all)
        {
            Interlocked.Exchange(ref _invalidateAll, 0);
            _cache.Clear();
        }
        while (_outdated.TryDequeue(out var entity)) _cache.Remove(entity);
    }

    /// <summary>
    /// Once per batch: groups its clean rows by entity (arrival order within each), replays those of cached
    /// entities over their cached state here — their windows go into the batch, the new state back into the
    /// cache — and prepares the conditional writes; the others are read from Redis by the fetch.
    /// </summary>
    private void Advance(EventBatch batch)
    {
        foreach (var rows in _groups.Values) { rows.Clear(); _spareLists.Push(rows); }
        _groups.Clear();
        _cold.Clear();
        _touchedBuckets.Clear();
        _round = null;
        _warmRedelivered = 0;
        _warmLate = 0;
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
        WriteRound? round = null;
        foreach (var (entity, rows) in _groups)
        {
            if (!_cache.TryGetValue(entity, out var cached))
            {
                _cold.Add((entity, rows, EntityKeys(entity)));
                continue;
            }
            var update = AdvanceEntity(batch, cached, rows);
            _warmRedelivered += update.Redelivered;
            _warmLate += update.Late;
            round ??= new WriteRound(batch, batch.Generation);
            // Its own copy of the rows: the grouping lists are reused by the next batch, maybe before this write settles.
            round.Writes.Add(new EntityWrite(entity, [.. rows], update));
        }
        if (round is not null)
        {
            PrepareWriteCalls(round);
            // Kept only now: keeping trims the state, and the write must delete the buckets the trim drops.
            foreach (var write in round.Writes) Keep(write.Entity, write.Update.Next);
        }
        _round = round;
        _advanced = batch;
        _advancedGeneration = batch.Generation;
    }

    private void Keep(string entity, CachedState state)
    {
        if (CachedEntities == 0 || string.IsNullOrEmpty(state.Token)) return;
        _engine.Trim(state.State);
        _cache[entity] = state;
    }

    /// <summary>
    /// Replays the entity's events over its cached state, writing each event's window values into the batch,
    /// and returns the state Redis should hold afterwards (not yet written).
    /// </summary>
    private Pending AdvanceEntity(EventBatch batch, CachedState cached, List<int> rows)
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
        return new Pending(new CachedState(applied ? NewToken() : cached.Token, state, src, off, refresh ? now : cached.ExpirySetAtMs, cached.Keys),
            cached.Token, applied, touchedFrom, _touchedBuckets.Count - touchedFrom, redelivered, late, refresh, empty);
    }

    private string NewToken() => _tokenPrefix + Interlocked.Increment(ref _tokens).ToString("x", CultureInfo.InvariantCulture);

    private void PrepareWriteCalls(WriteRound round)
    {
        var entities = round.Writes;
        var perCall = _cluster ? 1 : EntitiesPerCall;
        var series = _plan.Series;
        var keys = new List<RedisKey>(perCall * (1 + series.Count));
        var args = new List<RedisValue>(256);
        var firstInCall = 0;
        for (var i = 0; i < entities.Count; i++)
        {
            if (i == firstInCall)
            {
                args.Add(series.Count);
                args.Add(_expiryMs);
                args.Add(Math.Min(perCall, entities.Count - i));
            }
            var entity = entities[i].Entity;
            var update = entities[i].Update;
            var state = update.Next.State;
            keys.AddRange(update.Next.Keys);
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
            if (i - firstInCall + 1 < perCall && i < entities.Count - 1) continue;
            round.Calls.Add(([.. keys], [.. args], firstInCall, i - firstInCall + 1));
            firstInCall = i + 1;
            keys.Clear();
            args.Clear();
        }
    }

    private void QueueUpdateCalls(List<(string Entity, List<int> Rows, RedisKey[] Keys)> entities, EventBatch batch, IBatch round,
        List<(string Entity, List<int> Rows, RedisKey[] Keys, Task<RedisResult> State)> calls)
    {
        // Up to EntitiesPerCall entities per script call on a standalone server: fewer calls, while one
        // call stays short (a script blocks the server; other clients must not wait long). In a cluster
        // a script may only touch one slot's keys, so one entity (one hash tag) per call.
        var perCall = _cluster ? 1 : EntitiesPerCall;
        var pending = new List<(string Entity, List<int> Rows, RedisKey[] Keys)>(perCall);
        var keys = new List<RedisKey>(perCall * (1 + _plan.Series.Count));
        var args = new List<RedisValue>(256);
        for (var i = 0; i < entities.Count; i++)
        {
            var (entity, rows, entityKeys) = entities[i];
            if (pending.Count == 0) Header(args, Math.Min(perCall, entities.Count - i));
            AddEntity(entityKeys, rows, batch, keys, args);
            pending.Add((entity, rows, entityKeys));
            if (pending.Count < perCall && i < entities.Count - 1) continue;
            var call = round.ScriptEvaluateAsync(Script, [.. keys], [.. args]);
            for (var e = 0; e < pending.Count; e++) calls.Add((pending[e].Entity, pending[e].Rows, pending[e].Keys, Pick(call, e)));
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

    /// <summary>The entity's window keys: its meta hash, then one hash per series.</summary>
    private RedisKey[] EntityKeys(string entity)
    {
        var keys = new RedisKey[1 + _plan.Series.Count];
        keys[0] = FeatureKeys.WindowMeta(_plan, entity);
        for (var s = 0; s < _plan.Series.Count; s++) keys[1 + s] = FeatureKeys.Series(_plan, _plan.Series[s], entity);
        return keys;
    }

    /// <summary>Lookup <paramref name="lookup"/>'s key for an entity, built once per entity while the map stays under its bound.</summary>
    private string LookupKey(int lookup, string entity)
    {
        var keys = _lookupKeys[lookup];
        if (keys.TryGetValue(entity, out var key)) return key;
        if (keys.Count >= DefaultCachedEntities) keys.Clear();
        return keys[entity] = FeatureKeys.Lookup(_plan.Lookups[lookup], entity);
    }

    private void AddEntity(RedisKey[] entityKeys, List<int> rows, EventBatch batch, List<RedisKey> keys, List<RedisValue> args)
    {
        var series = _plan.Series;
        keys.AddRange(entityKeys);
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
    private void Replay(EventBatch batch, string entity, List<int> rows, RedisKey[] keys, RedisResult result)
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

        var (newSrc, newOff, _, redelivered, late) = ReplayRows(batch, state, src, off, rows, touched: null);
        batch.RedeliveredEvents += redelivered;
        batch.LateEvents += late;
        // The state now equals the one in Redis, under the token the script left in the meta hash.
        // WindowUpdate.lua set the expiry of every key when it applied events; when it did not, an earlier
        // write did, recently enough for the refresh interval.
        Keep(entity, new CachedState((string?)parts[3] ?? "", state, newSrc, newOff, Environment.TickCount64, keys));
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
                var got = _lookupReads[LookupKey(l, entity)].Result;
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
