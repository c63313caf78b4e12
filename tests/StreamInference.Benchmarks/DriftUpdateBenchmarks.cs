using BenchmarkDotNet.Attributes;
using StreamInference.Batch.Profiling;
using StreamInference.Core.Drift;
using StreamInference.Core.Features;

namespace StreamInference.Benchmarks;

/// <summary>
/// Per-event cost of the drift update for 20 features (12 continuous over 10 quantile bins, 8
/// categorical over 6 categories) plus the score, with per-hour reference shares and each event's time (the
/// processor's path: the window also counts its hours of the day), against a baseline that only reads the same
/// values. Results are per event (OperationsPerInvoke = rows).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("drift")]
public class DriftUpdateBenchmarks
{
    private const int Rows = 4096;
    private const int Features = 20;
    private float[] _values = [];
    private long[] _masks = [];
    private double[] _scores = [];
    private long[] _times = [];
    private DriftMonitor _monitor = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        var yaml = "featureSet: bench\nversion: 1\nevent: { idField: id, entityKeyField: key, timeField: ts }\nfeatures:\n" +
                   string.Concat(Enumerable.Range(0, Features).Select(f => $"  - {{ name: f{f}, event: f{f}, default: 0 }}\n"));
        var plan = FeatureSetLoader.Parse(yaml);
        var profile = new ReferenceProfile { FeatureSet = "bench", FeatureSetVersion = 1, Model = "m", ModelVersion = "1", Rows = 20_000 };
        var start = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds();
        var referenceTimes = Enumerable.Range(0, 20_000).Select(_ => start + random.NextInt64(0, 30 * 86_400_000L)).ToArray();
        for (var f = 0; f < Features; f++)
        {
            var categorical = f >= 12;
            var sample = Enumerable.Range(0, 20_000).Select(_ => categorical ? random.Next(6) : random.NextDouble() * 100).ToArray();
            profile.Features.Add(ProfileBuilder.Describe($"f{f}", sample, categorical, 0, referenceTimes));
        }
        profile.Prediction = ProfileBuilder.Describe("prediction", Enumerable.Range(0, 20_000).Select(_ => random.NextDouble()).ToArray(), false, 0, referenceTimes);
        _monitor = new DriftMonitor(profile, plan, new DriftSettings { WindowEvents = int.MaxValue });

        _values = new float[Rows * Features];
        for (var i = 0; i < Rows; i++)
            for (var f = 0; f < Features; f++)
                _values[i * Features + f] = f >= 12 ? random.Next(7) : (float)(random.NextDouble() * 110);
        _masks = Enumerable.Range(0, Rows).Select(i => i % 17 == 0 ? 1L << (i % Features) : 0).ToArray();
        _scores = Enumerable.Range(0, Rows).Select(_ => random.NextDouble()).ToArray();
        _times = Enumerable.Range(0, Rows).Select(i => start + 40L * 86_400_000 + i * 250L).ToArray();
    }

    /// <summary>The floor: read every value the update reads.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Rows)]
    public double ReadValuesOnly()
    {
        var sum = 0.0;
        var values = _values.AsSpan();
        for (var i = 0; i < Rows; i++)
        {
            var row = values.Slice(i * Features, Features);
            for (var f = 0; f < row.Length; f++) sum += row[f];
            sum += _scores[i] + _masks[i] + _times[i];
        }
        return sum;
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public void DriftUpdate()
    {
        var values = _values.AsSpan();
        for (var i = 0; i < Rows; i++) _monitor.Observe(values.Slice(i * Features, Features), _masks[i], _scores[i], _times[i]);
    }
}
