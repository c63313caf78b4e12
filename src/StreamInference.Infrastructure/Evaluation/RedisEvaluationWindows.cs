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
/// labelled. Every write is idempotent (a prediction only when absent, a labelled one the same value again), so a
/// record redelivered after a crash rewrites what it wrote before. A sorted set indexes the open windows by start,
/// another the final ones (kept <c>RetentionMs</c> for the promotion gate).
/// <para>
/// A window is final once the evaluation's clock passes its end plus the horizon. The clock is the slowest of the
/// running evaluators' (each publishes the latest prediction event time it read), so one instance running ahead does
/// not close windows another is still filling. The reporter, under a lock, marks the window final inside its hash
/// first (<c>!final</c> = pending), then reads and publishes it, then marks it reported; a write checks the mark in
/// the same script, so nothing lands after the read. A reporter that dies after marking leaves the window pending and
/// frozen: the next one publishes the same content (reports carry the window's identity; keep the last).
/// </para>
/// </summary>
/// <param name="ns">The evaluation's namespace (<see cref="EvaluationNamespace.Of"/>): evaluations sharing a Redis keep apart.</param>
public sealed class RedisEvaluationWindows(IDatabase redis, string ns, long windowMs, long horizonMs, long retentionMs, long expiryGraceMs = 0)
{
    public RedisKey OpenIndex { get; } = $"evalw:{ns}:open";
    public RedisKey FinalIndex { get; } = $"evalw:{ns}:final";
    /// <summary>Each evaluator's clock: a field per instance, <c>&lt;clock ms&gt;|&lt;wall ms written&gt;</c>.</summary>
    public RedisKey Clocks { get; } = $"evalw:{ns}:clocks";
    private const string FinalField = "!final";
    private static readonly string WriteScript = EmbeddedResources.Text("EvaluationWindowWrite.lua");
    private readonly HashSet<WindowId> _indexed = [];
    private readonly string _owner = Guid.NewGuid().ToString("N");

    public long WindowMs { get; } = windowMs;

    /// <summary>A store only read (<see cref="ListAsync"/>, <see cref="ReadAsync"/>, <see cref="PairedAsync"/>): the windows' length does not matter to those.</summary>
    public static RedisEvaluationWindows Reader(IDatabase redis, string ns) => new(redis, ns, 1, 1, 0);

    /// <summary>A window's hash; the hash tag is the namespace and the window, so windows spread over a cluster.</summary>
    public RedisKey HashKey(WindowId id) => $"evalw:{{{ns}|{id}}}";

    public WindowId WindowOf(string model, string arm, long eventTimeMs) => new(model, arm, EvaluationWindows.WindowStart(eventTimeMs, WindowMs));

    /// <summary>The hash lives until the window is final plus the retention (then the gate no longer needs it); never less than a minute from now.</summary>
    private long ExpiresAtMs(WindowId id) =>
        Math.Max(id.StartMs + WindowMs + horizonMs + retentionMs + expiryGraceMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + expiryGraceMs) + 60_000;

    private static string Score(double score) => score.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A prediction the join took in (new or redelivered): counted in its window, unlabelled unless its label is there. False: the window was already final.</summary>
    public Task<bool> PredictedAsync(ScoredEvent p) => WriteAsync(WindowOf(p.Model, p.Arm, p.EventTimeMs), p.EventId, Score(p.Score), onlyIfAbsent: true);

    /// <summary>A labelled prediction from the join (or repeated by it for a redelivered record). False: the window was already final.</summary>
    public Task<bool> LabelledAsync(LabelledPrediction lp) =>
        WriteAsync(WindowOf(lp.Prediction.Model, lp.Prediction.Arm, lp.Prediction.EventTimeMs), lp.Prediction.EventId,
            Score(lp.Prediction.Score) + (lp.Label ? "|1" : "|0"), onlyIfAbsent: false);

    private async Task<bool> WriteAsync(WindowId id, string eventId, string value, bool onlyIfAbsent)
    {
        var written = (long)(await redis.ScriptEvaluateAsync(WriteScript, [HashKey(id)], [eventId, value, onlyIfAbsent ? "nx" : "set", ExpiresAtMs(id)]).ConfigureAwait(false));
        if (written == 0) return false;
        bool known;
        lock (_indexed) known = _indexed.Contains(id);
        if (known) return true;
        // The first write of this process to the window indexes it (idempotent: a restart repeats it harmlessly; a
        // window another instance reported meanwhile is found final by the next reporter and only unindexed).
        await redis.SortedSetAddAsync(OpenIndex, id.ToString(), id.StartMs, SortedSetWhen.NotExists).ConfigureAwait(false);
        lock (_indexed) _indexed.Add(id);
        return true;
    }

    /// <summary>Reads a window: its predictions, and the scores and labels of the labelled ones.</summary>
    public async Task<WindowContent> ReadAsync(WindowId id)
    {
        var entries = await redis.HashGetAllAsync(HashKey(id)).ConfigureAwait(false);
        var ids = new List<string>(entries.Length);
        var scores = new List<double>(entries.Length);
        var labels = new List<bool>(entries.Length);
        var predicted = 0;
        foreach (var e in entries)
        {
            if (e.Name == FinalField) continue;
            predicted++;
            var value = (string)e.Value!;
            var bar = value.IndexOf('|', StringComparison.Ordinal);
            if (bar < 0) continue;
            ids.Add((string)e.Name!);
            scores.Add(double.Parse(value.AsSpan(0, bar), CultureInfo.InvariantCulture));
            labels.Add(value[bar + 1] == '1');
        }
        return new WindowContent(id, predicted, [.. ids], [.. scores], [.. labels]);
    }

    /// <summary>
    /// Publishes this instance's clock (the latest prediction event time it read) and returns the evaluation's: the
    /// slowest of the instances that published theirs within <paramref name="liveMs"/>. Long-silent entries are removed.
    /// </summary>
    public async Task<long> SharedClockAsync(long ownClockMs, long liveMs)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        if (ownClockMs != long.MinValue)
            await redis.HashSetAsync(Clocks, _owner, string.Create(CultureInfo.InvariantCulture, $"{ownClockMs}|{now}")).ConfigureAwait(false);
        var slowest = long.MaxValue;
        foreach (var (owner, clock, writtenAt) in await ClocksAsync().ConfigureAwait(false))
        {
            if (now - writtenAt <= liveMs) slowest = Math.Min(slowest, clock);
            else if (now - writtenAt > 10 * liveMs) await redis.HashDeleteAsync(Clocks, owner).ConfigureAwait(false);
        }
        return slowest == long.MaxValue ? long.MinValue : slowest;
    }

    /// <summary>The latest clock any evaluator published: where a restarted one starts its join's clock.</summary>
    public async Task<long> LatestClockAsync()
    {
        var latest = long.MinValue;
        foreach (var (_, clock, _) in await ClocksAsync().ConfigureAwait(false)) latest = Math.Max(latest, clock);
        return latest;
    }

    private async Task<List<(string Owner, long Clock, long WrittenAt)>> ClocksAsync()
    {
        var clocks = new List<(string, long, long)>();
        foreach (var e in await redis.HashGetAllAsync(Clocks).ConfigureAwait(false))
        {
            var parts = ((string)e.Value!).Split('|');
            if (parts.Length == 2 && long.TryParse(parts[0], CultureInfo.InvariantCulture, out var clock) && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var at))
                clocks.Add(((string)e.Name!, clock, at));
        }
        return clocks;
    }

    /// <summary>
    /// Reports every open window that is final at <paramref name="clockMs"/> (its end plus the horizon passed) and that
    /// no other instance is reporting: <paramref name="report"/> gets its content and publishes it (true once the
    /// report is delivered); then it moves to the final index. A report not delivered leaves the window pending, to be
    /// reported by the next round. Returns how many were reported here.
    /// </summary>
    public async Task<int> ReportFinalAsync(long clockMs, Func<WindowContent, Task<bool>> report, TimeSpan lockFor)
    {
        if (clockMs == long.MinValue) return 0;
        var due = await redis.SortedSetRangeByScoreAsync(OpenIndex, double.NegativeInfinity, clockMs - WindowMs - horizonMs).ConfigureAwait(false);
        var reported = 0;
        foreach (var member in due)
        {
            var id = WindowId.Parse(member!);
            if (id.StartMs + WindowMs + horizonMs > clockMs) continue;
            var lockKey = (RedisKey)$"evalw:lock:{{{ns}|{id}}}";
            if (!await redis.LockTakeAsync(lockKey, _owner, lockFor).ConfigureAwait(false)) continue;
            try
            {
                if (await redis.SortedSetScoreAsync(OpenIndex, member).ConfigureAwait(false) is null) continue;   // reported meanwhile
                var key = HashKey(id);
                await redis.HashSetAsync(key, FinalField, "pending", When.NotExists).ConfigureAwait(false);
                if (await redis.HashGetAsync(key, FinalField).ConfigureAwait(false) != "reported")
                {
                    if (!await report(await ReadAsync(id).ConfigureAwait(false)).ConfigureAwait(false)) continue;
                    await redis.HashSetAsync(key, FinalField, "reported").ConfigureAwait(false);
                    reported++;
                }
                await redis.SortedSetAddAsync(FinalIndex, member, id.StartMs).ConfigureAwait(false);
                await redis.SortedSetRemoveAsync(OpenIndex, member).ConfigureAwait(false);
            }
            finally
            {
                await redis.LockReleaseAsync(lockKey, _owner).ConfigureAwait(false);
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
