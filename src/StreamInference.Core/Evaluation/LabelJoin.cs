namespace StreamInference.Core.Evaluation;

/// <summary>A prediction as the join sees it: which event, which model in which arm, its primary score, when the event happened.</summary>
public readonly record struct ScoredEvent(string EventId, string EntityKey, string Model, string Arm, double Score, long EventTimeMs, long? DeploymentVersion);

/// <summary>A ground-truth label: the event it belongs to, the outcome, when it became known (and when its event happened, when the source says).</summary>
public readonly record struct GroundTruth(string EventId, string EntityKey, bool Label, long LabelTimeMs, long? EventTimeMs);

/// <summary>A prediction with its label: what the evaluation windows take.</summary>
public readonly record struct LabelledPrediction(ScoredEvent Prediction, bool Label, long LabelTimeMs);

/// <summary>What happened to labels and predictions, counted exactly.</summary>
public sealed class JoinCounts
{
    /// <summary>Labels that found their event's predictions (at once, or when a prediction came after them).</summary>
    public long Joined { get; set; }
    /// <summary>Labels that arrived before any prediction of their event and waited for one.</summary>
    public long Early { get; set; }
    /// <summary>Early labels whose event was never predicted within the horizon (no such event, or it was dead-lettered).</summary>
    public long Orphans { get; set; }
    /// <summary>Labels that came after the horizon of their event: its predictions were already gone.</summary>
    public long Late { get; set; }
    /// <summary>A second label for an event already labelled (the first one counts).</summary>
    public long DuplicateLabels { get; set; }
    /// <summary>A prediction of a model in an arm already held for its event (an at-least-once redelivery): ignored.</summary>
    public long DuplicatePredictions { get; set; }
    /// <summary>Predictions whose horizon passed without a label (the coverage gap).</summary>
    public long Unlabelled { get; set; }
    /// <summary>Labelled predictions emitted (one per model of a joined event).</summary>
    public long Emitted { get; set; }

    public override string ToString() => FormattableString.Invariant(
        $"joined {Joined} (early {Early}), orphans {Orphans}, late {Late}, duplicate labels {DuplicateLabels}, duplicate predictions {DuplicatePredictions}, unlabelled {Unlabelled}, emitted {Emitted}");
}

/// <summary>
/// Joins ground-truth labels to the predictions of their event — the champion's and every challenger's — within a
/// horizon measured in event time: a prediction waits for its label until <c>event time + horizon</c>, a label that
/// comes first waits for its predictions as long. The clock is the prediction stream's: the latest event time
/// predicted (or what <see cref="Advance"/> moves it to when the stream is idle); labels never move it, so a label
/// stamped far ahead cannot expire the predictions of others. The join is deterministic: a replay joins like the
/// live run. Each event is labelled once: a second label is a duplicate, and a model's second prediction of an event
/// is a redelivery. State is bounded by the horizon: every entry leaves when its time is up.
/// </summary>
public sealed class LabelJoin(long horizonMs)
{
    private sealed class Entry
    {
        public long ExpiresAtMs;
        public readonly List<ScoredEvent> Predictions = [];
        public GroundTruth? Label;
    }

    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly PriorityQueue<string, long> _expiry = new();

    public long HorizonMs { get; } = horizonMs > 0 ? horizonMs : throw new ArgumentOutOfRangeException(nameof(horizonMs), "The horizon must be positive.");
    public JoinCounts Counts { get; } = new();
    /// <summary>Events held: predictions waiting for a label, labels waiting for predictions, labelled events kept to spot duplicates.</summary>
    public int Pending => _entries.Count;
    /// <summary>The join's clock: the latest event time predicted (or advanced to).</summary>
    public long NowMs { get; private set; } = long.MinValue;

    /// <summary>A prediction; the labelled predictions it completes (its own, when its label came first).</summary>
    public IReadOnlyList<LabelledPrediction> OnPrediction(ScoredEvent p)
    {
        Advance(p.EventTimeMs);
        if (!_entries.TryGetValue(p.EventId, out var entry))
        {
            if (p.EventTimeMs + HorizonMs <= NowMs)
            {
                Counts.Unlabelled++;   // already past its horizon: it can never be labelled here
                return [];
            }
            entry = Add(p.EventId, p.EventTimeMs + HorizonMs);
        }
        foreach (var held in entry.Predictions)
        {
            if (held.Model != p.Model || held.Arm != p.Arm) continue;   // one model may predict an event in two arms (a shadow, then the fallback)
            Counts.DuplicatePredictions++;
            return [];
        }
        entry.Predictions.Add(p);
        if (entry.Label is not { } label) return [];
        if (entry.Predictions.Count == 1) Counts.Joined++;   // the early label's first prediction
        Counts.Emitted++;
        return [new LabelledPrediction(p, label.Label, label.LabelTimeMs)];
    }

    /// <summary>A label; the labelled predictions it completes (none when it is early, late, a duplicate).</summary>
    public IReadOnlyList<LabelledPrediction> OnLabel(GroundTruth l)
    {
        if (_entries.TryGetValue(l.EventId, out var entry))
        {
            if (entry.Label is not null)
            {
                Counts.DuplicateLabels++;
                return [];
            }
            // An entry without a label was made by a prediction: it holds at least one.
            entry.Label = l;
            Counts.Joined++;
            Counts.Emitted += entry.Predictions.Count;
            return [.. entry.Predictions.Select(p => new LabelledPrediction(p, l.Label, l.LabelTimeMs))];
        }
        if (l.EventTimeMs is { } eventTime && eventTime + HorizonMs <= NowMs)
        {
            Counts.Late++;
            return [];
        }
        // Early: the label waits for its predictions until its event's horizon (a horizon from now, without an event time).
        Counts.Early++;
        Add(l.EventId, (l.EventTimeMs ?? Math.Max(NowMs, 0)) + HorizonMs).Label = l;
        return [];
    }

    /// <summary>Moves the clock forward and lets every entry whose horizon passed go, counting what it leaves unmatched.</summary>
    public void Advance(long nowMs)
    {
        if (nowMs <= NowMs) return;
        NowMs = nowMs;
        while (_expiry.TryPeek(out var id, out var at) && at <= nowMs)
        {
            _expiry.Dequeue();
            if (!_entries.Remove(id, out var entry)) continue;
            if (entry.Label is null) Counts.Unlabelled += entry.Predictions.Count;
            else if (entry.Predictions.Count == 0) Counts.Orphans++;
        }
    }

    private Entry Add(string eventId, long expiresAtMs)
    {
        var entry = new Entry { ExpiresAtMs = expiresAtMs };
        _entries[eventId] = entry;
        _expiry.Enqueue(eventId, expiresAtMs);
        return entry;
    }
}
