using StackExchange.Redis;
using StreamInference.Batch.Features;
using StreamInference.Batch.History;
using StreamInference.Batch.Materialization;
using StreamInference.Batch.Synthetic;
using StreamInference.Core.Features;
using StreamInference.Core.Features.Windows;

namespace StreamInference.DevServices.Synthetic;

/// <summary>
/// Gives an empty Redis what a deployment would have after the batch path ran: a synthetic history
/// ending now (same cards and merchants as the live producer: the same world seed), its lookup snapshots and
/// window state, materialized through the batch path's own code.
/// </summary>
public static class WarmStart
{
    /// <summary>Events per day of the default synthetic history (the example model's training history has the same density).</summary>
    public const double EventsPerDay = 300_000 / 90.0;

    /// <param name="worldSeed">The world of the history (cards, merchants): the live producer's <see cref="ProduceOptions.WorldSeed"/>.</param>
    public static async Task<MaterializeReport> MaterializeAsync(IDatabase db, FeaturePlan plan, int worldSeed = HistoryOptions.DefaultSeed, int? events = null,
        TimeSpan? span = null, CancellationToken cancellationToken = default, DateTimeOffset? now = null)
    {
        var nowAt = now ?? DateTimeOffset.UtcNow;
        return await MaterializeAsync(db, plan, History(plan, nowAt, worldSeed, events, span), nowAt, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The synthetic history a warm start materializes: whole days of the training history's density up to
    /// <paramref name="now"/>. Deterministic, so a backtest can compute its features over the same past.
    /// </summary>
    public static EventHistory History(FeaturePlan plan, DateTimeOffset now, int worldSeed = HistoryOptions.DefaultSeed, int? events = null, TimeSpan? span = null)
    {
        var length = span ?? TimeSpan.FromDays(35);
        // Whole days, as the training history has them (each day's events follow the daily pattern), up to the end
        // of today; what the pattern puts after now has not happened yet and is left out.
        var end = new DateTimeOffset(now.UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
        var days = Math.Ceiling((end - now + length).TotalDays);
        return SyntheticHistory.Generate(plan, new HistoryOptions
        {
            // Same traffic density as the training history, so per-entity counts mean the same.
            Events = events ?? (int)(EventsPerDay * days), Seed = worldSeed, End = end, Span = TimeSpan.FromDays(days), Until = now,
        });
    }

    /// <summary>Lookups as of <paramref name="now"/> and every entity's window state after <paramref name="history"/>, into Redis.</summary>
    public static async Task<MaterializeReport> MaterializeAsync(IDatabase db, FeaturePlan plan, EventHistory history, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var nowAt = now;
        var order = history.EventTimeOrder();
        var nowMs = nowAt.ToUnixTimeMilliseconds();
        var timeline = LookupTimeline.Compute(history, nowMs, order);
        var states = new Dictionary<string, EntityWindowState>(StringComparer.Ordinal);
        PointInTimeFeatures.Compute(history, timeline, eventTimeOrder: order, finalStates: states);
        return await RedisMaterializer.WriteAsync(db, plan, timeline, nowMs, states, ct: cancellationToken).ConfigureAwait(false);
    }
}
