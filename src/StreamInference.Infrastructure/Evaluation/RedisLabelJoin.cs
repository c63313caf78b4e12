using System.Globalization;
using StackExchange.Redis;
using StreamInference.Core.Evaluation;

namespace StreamInference.Infrastructure.Evaluation;

/// <summary>
/// The label join (<see cref="LabelJoin"/>'s rules) with its state in Redis, so it survives a restart and a
/// rebalance: one hash per event, <c>{entity}:eval:&lt;event id&gt;</c> (the entity's hash tag, as the feature store's
/// keys), a field per model's prediction and one for the label, expiring at the event's time plus the horizon. One
/// Lua script per record makes the join atomic and idempotent: a record redelivered after a crash finds its field
/// taken and counts as a duplicate instead of being joined twice. The clock is the prediction stream's event time, as
/// in <see cref="LabelJoin"/>; what expires unmatched (orphans, unlabelled predictions) leaves Redis silently, so
/// those two counts come from the evaluation windows' coverage, not from here.
/// </summary>
public sealed class RedisLabelJoin(IDatabase redis, long horizonMs, long startClockMs = long.MinValue)
{
    private static readonly string Script = LoadScript();

    private static string LoadScript()
    {
        using var stream = typeof(RedisLabelJoin).Assembly.GetManifestResourceStream("LabelJoin.lua")
                           ?? throw new InvalidOperationException("Embedded LabelJoin.lua is missing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public long HorizonMs { get; } = horizonMs > 0 ? horizonMs : throw new ArgumentOutOfRangeException(nameof(horizonMs), "The horizon must be positive.");
    public JoinCounts Counts { get; } = new();
    /// <summary>The latest event time predicted (a restarted join may start from the last one its predecessor saw).</summary>
    public long NowMs { get; private set; } = startClockMs;

    public static RedisKey Key(string entityKey, string eventId) => $"{{{entityKey}}}:eval:{eventId}";

    public async Task<IReadOnlyList<LabelledPrediction>> OnPredictionAsync(ScoredEvent p)
    {
        if (p.EventTimeMs > NowMs) NowMs = p.EventTimeMs;
        var expires = p.EventTimeMs + HorizonMs;
        if (expires <= NowMs)
        {
            Counts.Unlabelled++;
            return [];
        }
        var value = string.Create(CultureInfo.InvariantCulture, $"{p.Score:R}|{p.EventTimeMs}|{p.Arm}|{p.DeploymentVersion}");
        var result = (RedisResult[])(await redis.ScriptEvaluateAsync(Script, [Key(p.EntityKey, p.EventId)], ["p", value, p.Model, expires]).ConfigureAwait(false))!;
        switch ((string)result[0]!)
        {
            case "duplicate":
                Counts.DuplicatePredictions++;
                return [];
            case "pending":
                return [];
            case var outcome:
                if (outcome == "labelled-first") Counts.Joined++;
                Counts.Emitted++;
                var (label, labelTime) = ParseLabel((string)result[1]!);
                return [new LabelledPrediction(p, label, labelTime)];
        }
    }

    public async Task<IReadOnlyList<LabelledPrediction>> OnLabelAsync(GroundTruth l)
    {
        if (l.EventTimeMs is { } eventTime && eventTime + HorizonMs <= NowMs)
        {
            Counts.Late++;
            return [];
        }
        var expires = (l.EventTimeMs ?? Math.Max(NowMs, 0)) + HorizonMs;
        var value = string.Create(CultureInfo.InvariantCulture, $"{(l.Label ? 1 : 0)}|{l.LabelTimeMs}");
        var result = (RedisResult[])(await redis.ScriptEvaluateAsync(Script, [Key(l.EntityKey, l.EventId)], ["l", value, "", expires]).ConfigureAwait(false))!;
        switch ((string)result[0]!)
        {
            case "duplicate":
                Counts.DuplicateLabels++;
                return [];
            case "early":
                Counts.Early++;
                return [];
            default:
                Counts.Joined++;
                var joined = new List<LabelledPrediction>((result.Length - 2) / 2);
                for (var i = 2; i < result.Length; i += 2)
                {
                    var parts = ((string)result[i + 1]!).Split('|');
                    var prediction = new ScoredEvent(l.EventId, l.EntityKey, (string)result[i]!, parts[2],
                        double.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture),
                        parts[3].Length == 0 ? null : long.Parse(parts[3], CultureInfo.InvariantCulture));
                    joined.Add(new LabelledPrediction(prediction, l.Label, l.LabelTimeMs));
                }
                Counts.Emitted += joined.Count;
                return joined;
        }
    }

    private static (bool Label, long LabelTimeMs) ParseLabel(string value)
    {
        var bar = value.IndexOf('|', StringComparison.Ordinal);
        return (value[..bar] == "1", long.Parse(value.AsSpan(bar + 1), CultureInfo.InvariantCulture));
    }
}
