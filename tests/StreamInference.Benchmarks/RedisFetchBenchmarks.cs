using System.Globalization;
using BenchmarkDotNet.Attributes;
using StackExchange.Redis;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;
using StreamInference.DevServices.Redis;
using StreamInference.Infrastructure.Redis;

namespace StreamInference.Benchmarks;

/// <summary>
/// The enrich stage's Redis access for 1,024 decoded payment events split into batches of
/// <see cref="BatchSize"/>, all three through <see cref="RedisFeatureStore.FetchAsync"/>:
/// <list type="bullet">
/// <item><c>PerKeyAwaited</c> (baseline): one call per key, each awaited before the next — per card one
/// window-script call, per distinct merchant one HMGET (the store's Redis Cluster mode, one entity per
/// script, with the batch sent one command at a time: <see cref="SequentialRedis"/>);</item>
/// <item><c>Pipelined</c>: what the processor does on a standalone server — per batch the window script for
/// up to 16 cards per call and one HMGET per distinct merchant, all sent together in one round trip;</item>
/// <item><c>SameCommandsAwaited</c>: <c>Pipelined</c>'s commands (16 cards per script call) sent one at a
/// time, each awaited: what pipelining alone saves.</item>
/// </list>
/// Every invocation advances the records' offsets, so the script applies the events (no redelivery
/// short-cut); each batch's fetch is followed by the wait for its window writes (the persist stage), so
/// every variant does all of its Redis work. Redis: <see cref="BenchmarkEnvironment.RedisConfiguration"/>, or an embedded Garnet in this
/// process, which then shares the CPU with the client and whose own allocations count in the allocated
/// bytes (BenchmarkDotNet measures the whole process). Results are per event.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("redis-fetch")]
public class RedisFetchBenchmarks
{
    private const int Events = 1024;

    [Params(1, 4, 16, 64, 256, 1024)]
    public int BatchSize { get; set; }

    private EmbeddedGarnet? _garnet;
    private ConnectionMultiplexer _redis = null!;
    private FeaturePlan _plan = null!;
    private EventBatch[] _batches = [];
    private RedisFeatureStore _store = null!;
    private RedisFeatureStore _perKeyStore = null!;
    private RedisFeatureStore _sequentialStore = null!;

    [GlobalSetup]
    public void Setup()
    {
        var configuration = BenchmarkEnvironment.RedisConfiguration;
        if (configuration is null)
        {
            _garnet = new EmbeddedGarnet();
            configuration = _garnet.Configuration;
        }
        _redis = ConnectionMultiplexer.Connect(configuration);
        _plan = BenchmarkEnvironment.LoadPlan();
        var eventTime = BenchmarkEnvironment.EventTime;
        // A unique prefix per setup: fresh windows for each case, and no collision with real keys on a shared server.
        var prefix = $"bench-{Guid.NewGuid():N}"[..14] + "-";
        _batches = BenchmarkEnvironment.DecodeBatches(_plan, BenchmarkEnvironment.EncodePayments(Events, eventTime, prefix), BatchSize);
        SeedLookups(eventTime.AddHours(-1).ToUnixTimeMilliseconds());
        _store = new RedisFeatureStore(_redis, _plan);
        _perKeyStore = new RedisFeatureStore(SequentialRedis.Wrap(_redis, asCluster: true), _plan);
        _sequentialStore = new RedisFeatureStore(SequentialRedis.Wrap(_redis, asCluster: false), _plan);

        // All three must return the materialized values (a benchmark of misses would measure nothing).
        FetchAndPersistAsync(_store, _batches[0]).GetAwaiter().GetResult();
        var pipelined = _batches[0].LookupRow(_batches[0].Rows[0]).ToArray();
        AdvanceOffsets();
        FetchAndPersistAsync(_perKeyStore, _batches[0]).GetAwaiter().GetResult();
        var perKey = _batches[0].LookupRow(_batches[0].Rows[0]).ToArray();
        AdvanceOffsets();
        FetchAndPersistAsync(_sequentialStore, _batches[0]).GetAwaiter().GetResult();
        var sequential = _batches[0].LookupRow(_batches[0].Rows[0]).ToArray();
        if (pipelined.Any(v => !double.IsFinite(v)) || !pipelined.SequenceEqual(perKey) || !pipelined.SequenceEqual(sequential))
            throw new InvalidOperationException(
                $"Lookup fetch check failed: pipelined [{string.Join(", ", pipelined)}], per key [{string.Join(", ", perKey)}], sequential [{string.Join(", ", sequential)}].");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_garnet is null)
        {
            // A shared server: remove what the benchmark wrote.
            var db = _redis.GetDatabase();
            var keys = new HashSet<RedisKey>();
            foreach (var batch in _batches)
            {
                for (var k = 0; k < batch.OkCount; k++)
                {
                    var row = batch.Rows[k];
                    var card = batch.EntityKeys[row]!;
                    keys.Add(FeatureKeys.WindowMeta(_plan, card));
                    foreach (var series in _plan.Series) keys.Add(FeatureKeys.Series(_plan, series, card));
                    foreach (var lookup in _plan.Lookups) keys.Add(FeatureKeys.Lookup(lookup, batch.TextRow(row)[lookup.EntityTextSlot]!));
                }
            }
            foreach (var key in keys) db.KeyDelete(key, CommandFlags.FireAndForget);
            db.Ping();
        }
        _redis.Dispose();
        _garnet?.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Events)]
    public async Task PerKeyAwaited()
    {
        AdvanceOffsets();
        foreach (var batch in _batches) await FetchAndPersistAsync(_perKeyStore, batch).ConfigureAwait(false);
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public async Task Pipelined()
    {
        AdvanceOffsets();
        foreach (var batch in _batches) await FetchAndPersistAsync(_store, batch).ConfigureAwait(false);
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public async Task SameCommandsAwaited()
    {
        AdvanceOffsets();
        foreach (var batch in _batches) await FetchAndPersistAsync(_sequentialStore, batch).ConfigureAwait(false);
    }

    /// <summary>The next invocation's records come later in the partition: the script applies them.</summary>
    private void AdvanceOffsets()
    {
        foreach (var batch in _batches)
        {
            batch.MarkRefilled();
            for (var i = 0; i < batch.Count; i++)
                batch.Records[i] = batch.Records[i] with { Offset = batch.Records[i].Offset + Events };
        }
    }

    /// <summary>The enrich stage's fetch and the persist stage's wait for the batch's window writes: all of its Redis work.</summary>
    private static async Task FetchAndPersistAsync(RedisFeatureStore store, EventBatch batch)
    {
        await store.FetchAsync(batch, CancellationToken.None).ConfigureAwait(false);
        await store.PersistAsync(batch, CancellationToken.None).ConfigureAwait(false);
    }

    private void SeedLookups(long asOfMs)
    {
        var db = _redis.GetDatabase();
        var random = new Random(9);
        var seeded = new HashSet<string>(StringComparer.Ordinal);
        var writes = new List<Task>();
        foreach (var batch in _batches)
        {
            for (var k = 0; k < batch.OkCount; k++)
            {
                var texts = batch.TextRow(batch.Rows[k]);
                foreach (var lookup in _plan.Lookups)
                {
                    var key = FeatureKeys.Lookup(lookup, texts[lookup.EntityTextSlot]!);
                    if (!seeded.Add(key)) continue;
                    var entries = new List<HashEntry> { new(FeatureKeys.AsOfField, asOfMs) };
                    foreach (var field in lookup.Fields)
                        entries.Add(new HashEntry(field, (random.NextDouble() * 100).ToString("R", CultureInfo.InvariantCulture)));
                    writes.Add(db.HashSetAsync(key, [.. entries]));
                }
            }
        }
        Task.WaitAll([.. writes]);
    }
}
