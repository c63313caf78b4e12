using StreamInference.Core.Features;

namespace StreamInference.Core.Pipeline;

/// <summary>
/// One micro-batch and every buffer the stages need for it, allocated once and reused forever
/// (batches circulate through a fixed pool). Row <c>i</c> is the i-th consumed record; rows that
/// decoded cleanly are listed in <see cref="Rows"/> and occupy consecutive rows of <see cref="Features"/>,
/// which is handed to the model as one <c>[OkCount, FeatureCount]</c> tensor.
/// </summary>
public sealed class EventBatch
{
    public EventBatch(FeaturePlan plan, int capacity, int scoreWidth)
    {
        Completion = new BatchCompletion(() => DeliveryCompleted?.Invoke(this));
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(scoreWidth, 1);
        Capacity = capacity;
        FeatureCount = plan.FeatureCount;
        NumericWidth = plan.NumericFields.Count;
        TextWidth = plan.TextFields.Count;
        LookupWidth = plan.LookupValueCount;
        WindowWidth = plan.WindowCount;
        ScoreWidth = scoreWidth;
        Records = new InputRecord[capacity];
        DeadLetterReasons = new string?[capacity];
        DeadLetterDetails = new string?[capacity];
        EventIds = new string?[capacity];
        EntityKeys = new string?[capacity];
        EventTimesMs = new long[capacity];
        Numerics = new double[capacity * Math.Max(1, NumericWidth)];
        Texts = new string?[capacity * Math.Max(1, TextWidth)];
        LookupValues = new double[capacity * Math.Max(1, LookupWidth)];
        WindowValues = new double[capacity * Math.Max(1, WindowWidth)];
        Rows = new int[capacity];
        Features = new float[capacity * FeatureCount];
        DefaultedCounts = new int[capacity];
        DefaultedMasks = new long[capacity];
        DefaultedPerFeature = new long[FeatureCount];
        Scores = new double[capacity * scoreWidth];
        Labels = new string?[capacity];
        Arms = new ServingArm[capacity];
        RowModels = new ModelIdentity?[capacity];
    }

    public int Capacity { get; }
    public int FeatureCount { get; }
    public int NumericWidth { get; }
    public int TextWidth { get; }
    public int LookupWidth { get; }
    public int WindowWidth { get; }
    public int ScoreWidth { get; }

    /// <summary>Number of consumed records in this batch.</summary>
    public int Count { get; set; }
    /// <summary>Number of rows that decoded cleanly (the model's batch size).</summary>
    public int OkCount { get; set; }

    public InputRecord[] Records { get; }
    /// <summary>Non-null for a record to dead-letter.</summary>
    public string?[] DeadLetterReasons { get; }
    public string?[] DeadLetterDetails { get; }
    public string?[] EventIds { get; }
    public string?[] EntityKeys { get; }
    public long[] EventTimesMs { get; }
    public double[] Numerics { get; }
    public string?[] Texts { get; }
    public double[] LookupValues { get; }
    /// <summary>Raw windowed aggregates per row (before transforms), <c>Capacity × WindowWidth</c>.</summary>
    public double[] WindowValues { get; }
    /// <summary>Clean rows too late to be added to the windowed aggregates (scored all the same).</summary>
    public int LateEvents { get; set; }
    /// <summary>Clean rows whose window update was already applied (a redelivery), so skipped.</summary>
    public int RedeliveredEvents { get; set; }
    /// <summary>Lookup values present in Redis but stale or newer than the event, so defaulted.</summary>
    public int StaleLookups { get; set; }
    /// <summary>Row index (into Records) of the k-th clean row.</summary>
    public int[] Rows { get; }
    /// <summary>The pooled model input buffer, <c>Capacity × FeatureCount</c>.</summary>
    public float[] Features { get; }
    public int[] DefaultedCounts { get; }
    /// <summary>Per row: bit f set when feature f took its default (features beyond 64 not tracked).</summary>
    public long[] DefaultedMasks { get; }
    public long[] DefaultedPerFeature { get; }
    /// <summary>Model outputs of the k-th clean row: <c>Scores[k*ScoreWidth .. +ScoreWidth]</c>.</summary>
    public double[] Scores { get; }
    /// <summary>Classifier label of the k-th clean row, when the model emits one.</summary>
    public string?[] Labels { get; }
    /// <summary>Which arm of the deployment served the k-th clean row (champion unless a deployment says otherwise).</summary>
    public ServingArm[] Arms { get; }
    /// <summary>The model that served the k-th clean row, when a deployment serves rows by several; null: <see cref="ScoredBy"/>.</summary>
    public ModelIdentity?[] RowModels { get; }
    /// <summary>Version of the deployment whose models scored this batch; null without a deployment.</summary>
    public long? DeploymentVersion { get; set; }
    public long ScoredAtMs { get; set; }
    /// <summary>The model that scored this batch (set by the scorer).</summary>
    public ModelIdentity? ScoredBy { get; set; }
    /// <summary>Stopwatch timestamp when the batch was flushed by the batcher.</summary>
    public long FlushedAt { get; set; }

    public Span<double> NumericRow(int row) => Numerics.AsSpan(row * NumericWidth, NumericWidth);
    public Span<string?> TextRow(int row) => Texts.AsSpan(row * TextWidth, TextWidth);
    public Span<double> LookupRow(int row) => LookupValues.AsSpan(row * LookupWidth, LookupWidth);
    public Span<double> WindowRow(int row) => WindowValues.AsSpan(row * WindowWidth, WindowWidth);
    public Span<float> FeatureRow(int k) => Features.AsSpan(k * FeatureCount, FeatureCount);
    public Span<double> ScoreRow(int k) => Scores.AsSpan(k * ScoreWidth, ScoreWidth);
    /// <summary>The model that served the k-th clean row.</summary>
    public ModelIdentity? ServedBy(int k) => RowModels[k] ?? ScoredBy;

    public void DeadLetter(int row, string reason, string detail)
    {
        DeadLetterReasons[row] = reason;
        DeadLetterDetails[row] = detail;
    }

    /// <summary>Lists the clean rows in <see cref="Rows"/>; call after decoding.</summary>
    public void CollectCleanRows()
    {
        var k = 0;
        for (var i = 0; i < Count; i++)
            if (DeadLetterReasons[i] is null) Rows[k++] = i;
        OkCount = k;
    }

    /// <summary>The acknowledgements this batch waits for before its records complete.</summary>
    public BatchCompletion Completion { get; }

    /// <summary>Invoked once when every acknowledgement arrived (or one failed); set by the pipeline that owns the batch.</summary>
    internal Action<EventBatch>? DeliveryCompleted { get; set; }

    /// <summary>How many times the batch was reset: tells one fill of this (pooled) batch from the next.</summary>
    public long Generation { get; private set; }

    /// <summary>Marks the batch as a new fill without clearing it (for callers that re-send the same rows at new offsets).</summary>
    public void MarkRefilled() => Generation++;

    public void Reset()
    {
        Generation++;
        Array.Clear(DeadLetterReasons, 0, Count);
        Array.Clear(DeadLetterDetails, 0, Count);
        Array.Clear(Records, 0, Count);
        Array.Clear(EventIds, 0, Count);
        Array.Clear(EntityKeys, 0, Count);
        Array.Clear(Texts, 0, Count * TextWidth);
        Array.Clear(Labels, 0, OkCount);
        Array.Clear(Arms);
        Array.Clear(RowModels);
        DeploymentVersion = null;
        Array.Clear(DefaultedPerFeature);
        Count = 0;
        OkCount = 0;
        LateEvents = 0;
        RedeliveredEvents = 0;
        StaleLookups = 0;
        FeatureStoreUnavailable = false;
    }

    /// <summary>
    /// The feature store could not be reached (Defaults policy): every window and lookup feature of
    /// this batch took its default. The events may be missing from their windows' aggregates (a window
    /// update sent before the timeout can still be applied when Redis answers late).
    /// </summary>
    public bool FeatureStoreUnavailable { get; set; }
}

/// <summary>The role in which a model served a prediction (the prediction's <c>arm</c> field).</summary>
public enum ServingArm : byte
{
    Champion,
    Canary,
    Fallback,
    Shadow,
}

public static class ServingArms
{
    /// <summary>The arm as written on predictions and in metric labels: champion, canary, fallback, shadow.</summary>
    public static string Text(this ServingArm arm) => arm switch
    {
        ServingArm.Champion => "champion",
        ServingArm.Canary => "canary",
        ServingArm.Fallback => "fallback",
        _ => "shadow",
    };
}
