using System.Diagnostics;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>One batch size, measured: scored rows per second and the time per batch.</summary>
public sealed record BatchMeasurement(int BatchSize, int Runs, double EventsPerSecond, double MeanMs, double P50Ms, double P99Ms);

/// <summary>What the batch-size autotune measured and chose.</summary>
public sealed record AutotuneResult(int Chosen, double BudgetMs, IReadOnlyList<BatchMeasurement> Measurements)
{
    public BatchMeasurement ChosenMeasurement => Measurements.Single(m => m.BatchSize == Chosen);
}

/// <summary>
/// Times a scorer at given batch sizes through the serving path (<see cref="OnnxScorer.Score"/> on a
/// pooled <see cref="EventBatch"/>), for <c>bench model</c> and for the batch-size autotune at model
/// load. Inputs are deterministic pseudo-random feature values; the models' cost does not depend on them.
/// </summary>
public static class BatchSweep
{
    public static BatchMeasurement Measure(OnnxScorer scorer, FeaturePlan plan, int batchSize, TimeSpan duration, int minRuns = 5, int warmUpRuns = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var batch = new EventBatch(plan, batchSize, scorer.OutputWidth);
        var random = new Random(batchSize);
        var features = batch.Features;
        for (var i = 0; i < batchSize * plan.FeatureCount; i++) features[i] = (float)random.NextDouble();
        batch.OkCount = batchSize;
        for (var i = 0; i < warmUpRuns; i++) scorer.Score(batch);
        // Garbage from earlier sizes is not this size's cost.
        GC.Collect();
        GC.WaitForPendingFinalizers();

        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < minRuns || total.Elapsed < duration)
        {
            var start = Stopwatch.GetTimestamp();
            scorer.Score(batch);
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            if (times.Count >= 1_000_000) break;
        }
        times.Sort();
        var sum = times.Sum();
        return new BatchMeasurement(batchSize, times.Count, (double)batchSize * times.Count / (sum / 1000.0), sum / times.Count,
            Percentile(times, 0.50), Percentile(times, 0.99));
    }

    /// <summary>
    /// Picks the batch size for serving: among candidates (powers of two up to <paramref name="ceiling"/>,
    /// and the ceiling) whose p99 time per batch fits <paramref name="budget"/>, the smallest whose
    /// throughput is within 5 % of the best one's (beyond that, bigger batches only add latency). When
    /// nothing fits the budget, the fastest single batch: the smallest candidate (the caller warns).
    /// </summary>
    public static AutotuneResult Autotune(OnnxScorer scorer, FeaturePlan plan, int ceiling, TimeSpan budget, TimeSpan perCandidate)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ceiling, 1);
        var measurements = new List<BatchMeasurement>();
        foreach (var size in Candidates(ceiling))
        {
            BatchMeasurement m;
            try
            {
                m = Measure(scorer, plan, size, perCandidate, minRuns: 10);
            }
            catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException) when (measurements.Count > 0)
            {
                break;   // e.g. out of device memory: this size and larger ones cannot be served
            }
            measurements.Add(m);
            // Larger batches only take longer: stop once the typical call is over the budget (the
            // median, so one slow outlier does not end the sweep early).
            if (m.P50Ms > budget.TotalMilliseconds) break;
        }
        return new AutotuneResult(Choose(measurements, budget.TotalMilliseconds), budget.TotalMilliseconds, measurements);
    }

    /// <summary>The rule of <see cref="Autotune"/>, on given measurements.</summary>
    public static int Choose(IReadOnlyList<BatchMeasurement> measurements, double budgetMs)
    {
        if (measurements.Count == 0) throw new ArgumentException("No measurements.", nameof(measurements));
        var fitting = measurements.Where(m => m.P99Ms <= budgetMs).ToList();
        if (fitting.Count == 0) return measurements.MinBy(m => m.BatchSize)!.BatchSize;
        var best = fitting.Max(m => m.EventsPerSecond);
        return fitting.Where(m => m.EventsPerSecond >= 0.95 * best).MinBy(m => m.BatchSize)!.BatchSize;
    }

    public static IEnumerable<int> Candidates(int ceiling)
    {
        for (var size = 1; size < ceiling; size *= 2) yield return size;
        yield return ceiling;
    }

    private static double Percentile(List<double> sorted, double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
}
