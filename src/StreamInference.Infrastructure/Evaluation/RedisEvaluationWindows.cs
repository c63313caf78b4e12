using System.Globalization;
using StackExchange.Redis;
using StreamInference.Core.Evaluation;

namespace StreamInference.Infrastructure.Evaluation;

/// <summary>One event-time window of one model in one arm, as the store names it.</summary>
public readonly record struct WindowId(string Model, string Arm, long StartMs)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Model}|{Arm}|{StartMs}");

    public static WindowId Parse(string text)
    {
        var last = text.LastIndexOf('|');
        var first = text.LastIndexOf('|', last - 1);
        return new WindowId(text[..first], text[(first + 1)..last], long.Parse(text.AsSpan(last + 1), CultureInfo.InvariantCulture));
    }
}

/// <summary>A window's content: every prediction the join took in, and the label of those that have one.</summary>
public sealed record WindowContent(WindowId Id, long Predicted, string[] EventIds, double[] Scores, bool[] Labels);

/// <summary>
/// The live evaluation's event-time windows, kept in Redis so that a restart or a rebalance loses nothing and counts
/// nothing twice. One hash per model, arm and window, <c>evalw:{model|arm|start}</c> (its own hash tag: windows spread
/// over a cluster), with a field per event id: <c>score</c> while unlabelled, <c>score|0</c> or <c>score|1</c> once
/// labelled. Every write is idempotent (HSETNX for a prediction, HSET of the same value for a labelled one), so a
/// record redelivered after a crash rewrites what it wrote before. A sorted set indexes the open windows by start,
/// another the final ones (kept <c>RetentionMs</c> for the promotion gate); any instance may report a window once the
/// join's clock passes its end plus the horizon, under a short lock, so a window is reported by one instance (again
/// only if that one died between reporting and marking it final: reports carry the window's identity).
/// </summary>
public sealed class RedisEvaluationWindows(IDatabase redis, long windowMs, long horizonMs, long retentionMs, long expiryGraceMs = 0)
{
    public const string OpenIndex = "evalw:open";
    public const string FinalIndex = "evalw:final";
    private readonly HashSet<WindowId> _indexed = [];
    private readonly string _owner = Guid.NewGuid().ToString("N");

    public long WindowMs { get; } = windowMs;

    /// <summary>A store only read (<see cref="ListAsync"/>, <see cref="ReadAsync"/>, <see cref="PairedAsync"/>): the windows' length does not matter to those.</summary>
    public static RedisEvaluationWindows Reader(IDatabase redis) => new(redis, 1, 1, 0);

    public static RedisKey HashKey(WindowId id) => $"evalw:{{{id}}}";

    public WindowId WindowOf(string model, string arm, long eventTimeMs) => new(model, arm, EvaluationWindows.WindowStart(eventTimeMs, WindowMs));

    /// <summary>The hash lives until the window is final plus the retention (then the gate no longer needs it).</summary>
    private long ExpiresAtMs(WindowId id) => id.StartMs + WindowMs + horizonMs + retentionMs + expiryGraceMs + 60_000;

    private static string Score(double score) => score.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A prediction the join took in (new or redelivered): counted in its window, unlabelled unless its label is there.</summary>
    public Task PredictedAsync(ScoredEvent p) => WriteAsync(WindowOf(p.Model, p.Arm, p.EventTimeMs), p.EventId, Score(p.Score), onlyIfAbsent: true);

    /// <summary>A labelled prediction from the join (or repeated by it for a redelivered record).</summary>
    public Task LabelledAsync(LabelledPrediction lp) =>
        WriteAsync(WindowOf(lp.Prediction.Model, lp.Prediction.Arm, lp.Prediction.EventTimeMs), lp.Prediction.EventId,
            Score(lp.Prediction.Score) + (lp.Label ? "|1" : "|0"), onlyIfAbsent: false);

    private async Task WriteAsync(WindowId id, string eventId, string value, bool onlyIfAbsent)
    {
        var key = HashKey(id);
        bool first;
        lock (_indexed) first = _indexed.Add(id);
        var write = onlyIfAbsent ? redis.HashSetAsync(key, eventId, value, When.NotExists) : redis.HashSetAsync(key, eventId, value);
        if (!first)
        {
            await write.ConfigureAwait(false);
            return;
        }
        // First write of this process to the window: index it and bound its life (both idempotent, so a restart repeats them harmlessly).
        await Task.WhenAll(write,
            redis.KeyExpireAsync(key, DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAtMs(id)).UtcDateTime),
            redis.SortedSetAddAsync(OpenIndex, id.ToString(), id.StartMs, SortedSetWhen.NotExists)).ConfigureAwait(false);
    }

    /// <summary>Reads a window: its predictions, and the scores and labels of the labelled ones.</summary>
    public async Task<WindowContent> ReadAsync(WindowId id)
    {
        var entries = await redis.HashGetAllAsync(HashKey(id)).ConfigureAwait(false);
        var ids = new List<string>(entries.Length);
        var scores = new List<double>(entries.Length);
        var labels = new List<bool>(entries.Length);
        foreach (var e in entries)
        {
            var value = (string)e.Value!;
            var bar = value.IndexOf('|', StringComparison.Ordinal);
            if (bar < 0) continue;
            ids.Add((string)e.Name!);
            scores.Add(double.Parse(value.AsSpan(0, bar), CultureInfo.InvariantCulture));
            labels.Add(value[bar + 1] == '1');
        }
        return new WindowContent(id, entries.Length, [.. ids], [.. scores], [.. labels]);
    }

    /// <summary>
    /// Reports every open window that is final at <paramref name="clockMs"/> (its end plus the horizon passed) and that
    /// no other instance is reporting: <paramref name="report"/> gets its content (and publishes it); then it moves to the
    /// final index. Returns how many were reported here.
    /// </summary>
    public async Task<int> ReportFinalAsync(long clockMs, Func<WindowContent, Task> report)
    {
        if (clockMs == long.MinValue) return 0;
        var due = await redis.SortedSetRangeByScoreAsync(OpenIndex, double.NegativeInfinity, clockMs - WindowMs - horizonMs).ConfigureAwait(false);
        var reported = 0;
        foreach (var member in due)
        {
            var id = WindowId.Parse(member!);
            if (id.StartMs + WindowMs + horizonMs > clockMs) continue;
            var lockKey = (RedisKey)$"evalw:lock:{{{id}}}";
            if (!await redis.StringSetAsync(lockKey, _owner, TimeSpan.FromSeconds(60), When.NotExists).ConfigureAwait(false)) continue;
            try
            {
                if (await redis.SortedSetScoreAsync(OpenIndex, member).ConfigureAwait(false) is null) continue;   // reported meanwhile
                await report(await ReadAsync(id).ConfigureAwait(false)).ConfigureAwait(false);
                await redis.SortedSetAddAsync(FinalIndex, member, id.StartMs).ConfigureAwait(false);
                await redis.SortedSetRemoveAsync(OpenIndex, member).ConfigureAwait(false);
                reported++;
            }
            finally
            {
                await redis.KeyDeleteAsync(lockKey).ConfigureAwait(false);
            }
        }
        if (reported > 0)
            await redis.SortedSetRemoveRangeByScoreAsync(FinalIndex, double.NegativeInfinity, clockMs - WindowMs - horizonMs - retentionMs).ConfigureAwait(false);
        lock (_indexed) _indexed.RemoveWhere(w => w.StartMs + WindowMs + horizonMs <= clockMs);
        return reported;
    }

    /// <summary>Every window held (open and final, within the retention), optionally of one model.</summary>
    public async Task<IReadOnlyList<WindowId>> ListAsync(string? model = null)
    {
        var open = await redis.SortedSetRangeByScoreAsync(OpenIndex).ConfigureAwait(false);
        var final = await redis.SortedSetRangeByScoreAsync(FinalIndex).ConfigureAwait(false);
        return [.. open.Concat(final).Select(m => WindowId.Parse(m!)).Where(w => model is null || w.Model == model).Distinct().OrderBy(w => w.StartMs)];
    }

    /// <summary>
    /// The labelled events two models both predicted, over every window held: the champion's and the challenger's
    /// scores and the label, in the same order (what <see cref="DeLong.Compare"/> takes).
    /// </summary>
    public async Task<(double[] Champion, double[] Challenger, bool[] Labels)> PairedAsync(string champion, string challenger)
    {
        var windows = await ListAsync().ConfigureAwait(false);
        var (a, b, y) = (new List<double>(), new List<double>(), new List<bool>());
        foreach (var start in windows.Select(w => w.StartMs).Distinct())
        {
            var mine = new Dictionary<string, (double Score, bool Label)>(StringComparer.Ordinal);
            foreach (var w in windows.Where(w => w.StartMs == start && w.Model == champion))
            {
                var c = await ReadAsync(w).ConfigureAwait(false);
                for (var i = 0; i < c.EventIds.Length; i++) mine[c.EventIds[i]] = (c.Scores[i], c.Labels[i]);
            }
            if (mine.Count == 0) continue;
            foreach (var w in windows.Where(w => w.StartMs == start && w.Model == challenger))
            {
                var c = await ReadAsync(w).ConfigureAwait(false);
                for (var i = 0; i < c.EventIds.Length; i++)
                {
                    if (!mine.TryGetValue(c.EventIds[i], out var other)) continue;
                    a.Add(other.Score);
                    b.Add(c.Scores[i]);
                    y.Add(other.Label);
                }
            }
        }
        return ([.. a], [.. b], [.. y]);
    }
}
