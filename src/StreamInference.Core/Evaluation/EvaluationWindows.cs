namespace StreamInference.Core.Evaluation;

/// <summary>How a window is cut: by when the predicted events happened, or by when their labels arrived.</summary>
public enum EvaluationWindowKind
{
    /// <summary>Events of [start, end) by event time; final once the horizon has passed its end (no label can still come).</summary>
    EventTime,
    /// <summary>Every N labelled predictions of a model, in the order the labels arrived (the freshest view).</summary>
    LabelArrival,
}

/// <summary>One model's performance over one window, and how much of it was labelled (event-time windows).</summary>
/// <param name="Predicted">Predictions of the model in the window (event-time windows; the labelled count otherwise).</param>
/// <param name="Arm">The role the model's predictions had: champion, canary, shadow, fallback.</param>
public sealed record EvaluationReport(string Model, string Arm, EvaluationWindowKind Kind, long Sequence, long StartMs, long EndMs, long Predicted, BinaryMetrics Metrics)
{
    /// <summary>Share of the window's predictions that got a label.</summary>
    public double LabelCoverage => Predicted == 0 ? double.NaN : Metrics.Count / (double)Predicted;
}

/// <summary>
/// Live performance per model version from the label join's output: tumbling event-time windows (closed, final, when
/// the join's clock passes their end plus the horizon) and label-arrival windows of a fixed number of labelled
/// predictions. Each closed window is one <see cref="EvaluationReport"/> computed by <see cref="BinaryEvaluation"/>,
/// the same code a backtest uses. Single-threaded, like the join that feeds it.
/// </summary>
public sealed class EvaluationWindows
{
    private sealed class Bucket
    {
        public long Predicted;
        public long FirstMs = long.MaxValue;
        public readonly List<double> Scores = [];
        public readonly List<bool> Labels = [];
    }

    private readonly long _windowMs;
    private readonly long _horizonMs;
    private readonly int _arrivalEvents;
    private readonly double _threshold;
    private readonly bool _eventTimeWindows;
    private readonly Dictionary<(string Model, string Arm, long Start), Bucket> _eventTime = [];
    private readonly Dictionary<(string Model, string Arm), Bucket> _arrival = [];
    private readonly Dictionary<(string, string, EvaluationWindowKind), long> _sequence = [];

    /// <param name="eventTimeWindows">False: label-arrival windows only (the live evaluation keeps its event-time windows in Redis).</param>
    public EvaluationWindows(long windowMs, long horizonMs, int arrivalEvents = 2000, double threshold = 0.5, bool eventTimeWindows = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(windowMs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(horizonMs, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(arrivalEvents, 10);
        (_windowMs, _horizonMs, _arrivalEvents, _threshold, _eventTimeWindows) = (windowMs, horizonMs, arrivalEvents, threshold, eventTimeWindows);
    }

    /// <summary>Raised for each closed window, on the caller's thread.</summary>
    public event Action<EvaluationReport>? Closed;

    /// <summary>A prediction the join took in (labelled or not yet): counts toward its event-time window's coverage.</summary>
    public void OnPredicted(string model, string arm, long eventTimeMs)
    {
        if (_eventTimeWindows) BucketOf(model, arm, eventTimeMs).Predicted++;
    }

    /// <summary>A labelled prediction from the join.</summary>
    public void OnLabelled(LabelledPrediction p)
    {
        var (model, arm) = (p.Prediction.Model, p.Prediction.Arm);
        if (_eventTimeWindows)
        {
            var bucket = BucketOf(model, arm, p.Prediction.EventTimeMs);
            bucket.Scores.Add(p.Prediction.Score);
            bucket.Labels.Add(p.Label);
        }
        if (!_arrival.TryGetValue((model, arm), out var arrival)) _arrival[(model, arm)] = arrival = new Bucket();
        arrival.FirstMs = Math.Min(arrival.FirstMs, p.LabelTimeMs);
        arrival.Scores.Add(p.Prediction.Score);
        arrival.Labels.Add(p.Label);
        arrival.Predicted++;
        if (arrival.Scores.Count >= _arrivalEvents)
        {
            Close(model, arm, EvaluationWindowKind.LabelArrival, arrival.FirstMs, p.LabelTimeMs, arrival);
            _arrival[(model, arm)] = new Bucket();
        }
    }

    /// <summary>Closes every event-time window whose end plus the horizon is at or before <paramref name="nowMs"/> (the join's clock).</summary>
    public void Advance(long nowMs)
    {
        foreach (var key in _eventTime.Keys.Where(k => k.Start + _windowMs + _horizonMs <= nowMs).OrderBy(k => k.Start).ThenBy(k => k.Model, StringComparer.Ordinal).ThenBy(k => k.Arm, StringComparer.Ordinal).ToList())
        {
            var bucket = _eventTime[key];
            _eventTime.Remove(key);
            Close(key.Model, key.Arm, EvaluationWindowKind.EventTime, key.Start, key.Start + _windowMs, bucket);
        }
    }

    /// <summary>Windows still open (event-time buckets and label-arrival runs), for bounds checks.</summary>
    public int Open => _eventTime.Count + _arrival.Count;

    /// <summary>The start of the tumbling window of <paramref name="windowMs"/> holding <paramref name="eventTimeMs"/> (aligned to the Unix epoch).</summary>
    public static long WindowStart(long eventTimeMs, long windowMs) => eventTimeMs - (((eventTimeMs % windowMs) + windowMs) % windowMs);

    private Bucket BucketOf(string model, string arm, long eventTimeMs)
    {
        var start = WindowStart(eventTimeMs, _windowMs);
        if (!_eventTime.TryGetValue((model, arm, start), out var bucket)) _eventTime[(model, arm, start)] = bucket = new Bucket();
        return bucket;
    }

    private void Close(string model, string arm, EvaluationWindowKind kind, long start, long end, Bucket bucket)
    {
        var key = (model, arm, kind);
        var sequence = _sequence[key] = _sequence.GetValueOrDefault(key) + 1;
        var metrics = BinaryEvaluation.Compute(bucket.Scores.ToArray(), bucket.Labels.ToArray(), _threshold);
        Closed?.Invoke(new EvaluationReport(model, arm, kind, sequence, start, end, Math.Max(bucket.Predicted, bucket.Scores.Count), metrics));
    }
}
