using System.Globalization;
using StackExchange.Redis;
using StreamInference.Batch.Features;
using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;
using StreamInference.Infrastructure.Redis;

namespace StreamInference.Batch.Materialization;

public sealed record MaterializeReport(long LookupHashes, long WindowEntities, long AsOfMs);

/// <summary>
/// Writes what the batch path computed into the keys the stream reads (<see cref="FeatureKeys"/>):
/// each lookup's newest snapshot at or before the as-of time, with its <c>_asof</c>; and optionally each
/// entity's window buckets and watermark, so a fresh deployment starts with warm windows. Writing is
/// idempotent: each key is replaced, never incremented.
/// </summary>
public static class RedisMaterializer
{
    private const int PipelineDepth = 2_000;

    public static async Task<MaterializeReport> WriteAsync(
        IDatabase db, FeaturePlan plan, LookupTimeline timeline, long asOfMs,
        IReadOnlyDictionary<string, EntityWindowState>? windowStates, IProgress<long>? progress = null, CancellationToken ct = default)
    {
        var pending = new List<Task>(PipelineDepth);
        long written = 0, lookupHashes = 0, windowEntities = 0;

        async Task Flush(bool force)
        {
            if (!force && pending.Count < PipelineDepth) return;
            await Task.WhenAll(pending).WaitAsync(ct).ConfigureAwait(false);
            written += pending.Count;
            pending.Clear();
            progress?.Report(lookupHashes + windowEntities);
        }

        for (var l = 0; l < plan.Lookups.Count; l++)
        {
            var spec = plan.Lookups[l];
            foreach (var (entity, asOf, values) in timeline.Latest(l, asOfMs))
            {
                var key = FeatureKeys.Lookup(spec, entity);
                var entries = new List<HashEntry> { new(FeatureKeys.AsOfField, asOf) };
                var absent = new List<RedisValue>();
                for (var j = 0; j < values.Length; j++)
                {
                    if (double.IsFinite(values[j])) entries.Add(new HashEntry(spec.Fields[j], values[j].ToString("R", CultureInfo.InvariantCulture)));
                    else absent.Add(spec.Fields[j]);
                }
                if (absent.Count > 0) pending.Add(db.HashDeleteAsync(key, [.. absent]));
                pending.Add(db.HashSetAsync(key, [.. entries]));
                lookupHashes++;
                await Flush(false).ConfigureAwait(false);
            }
        }

        if (windowStates is not null && plan.Series.Count > 0)
        {
            var engine = new WindowEngine(plan);
            var expiry = TimeSpan.FromMilliseconds(RedisFeatureStore.ExpiryMs(plan));
            foreach (var (entity, state) in windowStates)
            {
                if (state.Watermark == EntityWindowState.NoWatermark) continue;
                engine.Trim(state);
                var meta = FeatureKeys.WindowMeta(plan, entity);
                // One MULTI/EXEC per entity (its keys share a hash tag): a processor's script sees the
                // entity before or after, never half-written.
                var tx = db.CreateTransaction();
                // Only the watermark: a live processor's redelivery marker (src, off) stays as it is.
                _ = tx.HashSetAsync(meta, [new HashEntry("wm", state.Watermark)]);
                // The state changes under any processor that cached it: dropping the version token makes
                // its next call read the whole state again (WindowUpdate.lua).
                _ = tx.HashDeleteAsync(meta, "v");
                _ = tx.KeyExpireAsync(meta, expiry);
                for (var s = 0; s < plan.Series.Count; s++)
                {
                    var key = FeatureKeys.Series(plan, plan.Series[s], entity);
                    _ = tx.KeyDeleteAsync(key);
                    var buckets = state.Series[s].Buckets;
                    if (buckets.Count == 0) continue;
                    _ = tx.HashSetAsync(key, buckets.Select(b => new HashEntry(
                        b.Key.ToString(CultureInfo.InvariantCulture), RedisFeatureStore.FormatStats(b.Value))).ToArray());
                    _ = tx.KeyExpireAsync(key, expiry);
                }
                pending.Add(tx.ExecuteAsync());
                windowEntities++;
                await Flush(false).ConfigureAwait(false);
            }
        }
        await Flush(true).ConfigureAwait(false);
        return new MaterializeReport(lookupHashes, windowEntities, asOfMs);
    }
}
