using System.Globalization;
using StackExchange.Redis;
using StreamInference.Core.Evaluation;

namespace StreamInference.Infrastructure.Evaluation;

/// <summary>
/// The label join (<see cref="LabelJoin"/>'s rules) with its state in Redis, so it survives a restart and a
/// rebalance: one hash per event, <c>{entity}:eval:&lt;event id&gt;</c> (the entity's hash tag, as the feature store's
/// keys), a field per model's prediction and one for the label, expiring at the event's time plus the horizon. One
/// Lua script per record makes the join atomic and idempotent: a record redelivered after a crash finds its field
/// taken and counts as a duplicate instead of being joined twice; what its first delivery joined is handed back as
/// <c>repeated</c>, so writes that follow the join (the evaluation windows', idempotent) are redone, not lost. The clock is the prediction stream's event time, as
/// in <see cref="LabelJoin"/>; what expires unmatched (orphans, unlabelled predictions) leaves Redis silently, so
/// those two counts come from the evaluation windows' coverage, not from here.
/// </summary>
/// <summary>What one record did in the join (for counters by outcome), and what a redelivered record's first delivery joined.</summary>
public sealed class JoinStep
{
    public string Outcome { get; private set; } = "";
    public List<LabelledPrediction> Repeated { get; } = [];
    internal void Set(string outcome) => Outcome = outcome;
}

/// <param name="expiryGraceMs">How much longer than the horizon an entry stays in Redis, whose expiry runs on wall-clock time:
/// the join decides by event time, and an evaluator running behind (a backlog, a restart) must still find its entries.</param>
/// <param name="ns">The evaluation's namespace (<see cref="EvaluationNamespace.Of"/>), in every key: evaluations sharing a Redis keep apart.</param>
public sealed class RedisLabelJoin(IDatabase redis, long horizonMs, long startClockMs = long.MinValue, long expiryGraceMs = 0, string ns = "")
{
    private static readonly string Script = EmbeddedResources.Text("LabelJoin.lua");

    public long HorizonMs { get; } = horizonMs > 0 ? horizonMs : throw new ArgumentOutOfRangeException(nameof(horizonMs), "The horizon must be positive.");
    /// <summary>The join's outcomes. Records are joined concurrently: the counts are updated under their own lock.</summary>
    public JoinCounts Counts { get; } = new();
    /// <summary>The latest event time predicted (a restarted join may start from the last one its predecessor saw).</summary>
    public long NowMs { get; private set; } = startClockMs;

    /// <summary>The event's hash: the entity's hash tag (as the feature store's keys), the namespace, the event id.</summary>
    public RedisKey Key(string entityKey, string eventId) => ns.Length == 0 ? $"{{{entityKey}}}:eval:{eventId}" : $"{{{entityKey}}}:eval:{ns}:{eventId}";

    /// <summary>Moves the clock forward to <paramref name="clockMs"/> (a restarted join continues from where its predecessors were).</summary>
    public void AdvanceTo(long clockMs)
    {
        lock (Counts)
            if (clockMs > NowMs) NowMs = clockMs;
    }

    /// <param name="step">Receives the outcome (taken, duplicate, past_horizon) and, for a duplicate of a prediction already labelled, that labelled prediction.</param>
    public async Task<IReadOnlyList<LabelledPrediction>> OnPredictionAsync(ScoredEvent p, JoinStep? step = null)
    {
        lock (Counts)
            if (p.EventTimeMs > NowMs) NowMs = p.EventTimeMs;
        var expires = p.EventTimeMs + HorizonMs;
        if (expires <= NowMs)
        {
            lock (Counts) Counts.Unlabelled++;
            step?.Set("past_horizon");
            return [];
        }
        var value = string.Create(CultureInfo.InvariantCulture, $"{p.Score:R}|{p.EventTimeMs}|{p.Arm}|{p.DeploymentVersion}");
        var result = (RedisResult[])(await redis.ScriptEvaluateAsync(Script, [Key(p.EntityKey, p.EventId)], ["p", value, $"{p.Model}|{p.Arm}", expires + expiryGraceMs]).ConfigureAwait(false))!;
        switch ((string)result[0]!)
        {
            case "duplicate":
                lock (Counts) Counts.DuplicatePredictions++;
                step?.Set("duplicate");
                if (step is not null && result.Length == 4) step.Repeated.AddRange(Predictions(p.EventId, p.EntityKey, (string)result[1]!, result, 2));
                return [];
            case "pending":
                step?.Set("taken");
                return [];
            case var outcome:
                step?.Set("taken");
                lock (Counts) if (outcome == "labelled-first") Counts.Joined++;
                lock (Counts) Counts.Emitted++;
                var (label, labelTime) = ParseLabel((string)result[1]!);
                return [new LabelledPrediction(p, label, labelTime)];
        }
    }

    /// <param name="step">Receives the outcome (joined, early, late, duplicate) and, for a duplicate, the predictions its event's first label joined, with that label.</param>
    public async Task<IReadOnlyList<LabelledPrediction>> OnLabelAsync(GroundTruth l, JoinStep? step = null)
    {
        if (l.EventTimeMs is { } eventTime && eventTime + HorizonMs <= NowMs)
        {
            lock (Counts) Counts.Late++;
            step?.Set("late");
            return [];
        }
        // Without the event's time, the label waits a horizon from when it became known (later than its event).
        var expires = (l.EventTimeMs ?? l.LabelTimeMs) + HorizonMs;
        var value = string.Create(CultureInfo.InvariantCulture, $"{(l.Label ? 1 : 0)}|{l.LabelTimeMs}");
        var result = (RedisResult[])(await redis.ScriptEvaluateAsync(Script, [Key(l.EntityKey, l.EventId)], ["l", value, "", expires + expiryGraceMs]).ConfigureAwait(false))!;
        switch ((string)result[0]!)
        {
            case "duplicate":
                lock (Counts) Counts.DuplicateLabels++;
                step?.Set("duplicate");
                step?.Repeated.AddRange(Predictions(l.EventId, l.EntityKey, (string)result[1]!, result, 2));
                return [];
            case "early":
                lock (Counts) Counts.Early++;
                step?.Set("early");
                return [];
            default:
                lock (Counts) Counts.Joined++;
                step?.Set("joined");
                var joined = Predictions(l.EventId, l.EntityKey, (string)result[1]!, result, 2);
                lock (Counts) Counts.Emitted += joined.Count;
                return joined;
        }
    }

    /// <summary>The labelled predictions in <paramref name="result"/> from <paramref name="from"/> on (model, value pairs), with the stored label.</summary>
    private static List<LabelledPrediction> Predictions(string eventId, string entityKey, string storedLabel, RedisResult[] result, int from)
    {
        var (label, labelTime) = ParseLabel(storedLabel);
        var joined = new List<LabelledPrediction>((result.Length - from) / 2);
        for (var i = from; i + 1 < result.Length; i += 2)
        {
            var parts = ((string)result[i + 1]!).Split('|');
            // The field is the model and its arm ("p:<model>|<arm>"): one model may predict an event in two arms (a shadow, then the fallback).
            var field = (string)result[i]!;
            var prediction = new ScoredEvent(eventId, entityKey, field[..field.LastIndexOf('|')], parts[2],
                double.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture),
                parts[3].Length == 0 ? null : long.Parse(parts[3], CultureInfo.InvariantCulture));
            joined.Add(new LabelledPrediction(prediction, label, labelTime));
        }
        return joined;
    }

    private static (bool Label, long LabelTimeMs) ParseLabel(string value)
    {
        var bar = value.IndexOf('|', StringComparison.Ordinal);
        return (value[..bar] == "1", long.Parse(value.AsSpan(bar + 1), CultureInfo.InvariantCulture));
    }
}
