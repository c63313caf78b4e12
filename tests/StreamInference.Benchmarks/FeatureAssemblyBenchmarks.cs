using BenchmarkDotNet.Attributes;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Benchmarks;

/// <summary>
/// <see cref="FeatureVectorAssembler.Assemble"/> for the example feature set (12 features: log1p,
/// bucketize, hour of day, two text equals, four windows, two lookups) over rows decoded from synthetic
/// events, with window and lookup values filled in (one row in 16 missing its lookups, so defaults are
/// exercised). The baseline copies the same number of raw values into the feature buffer: the floor.
/// Results are per event.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("assembly")]
public class FeatureAssemblyBenchmarks
{
    private const int Rows = 4096;
    private EventBatch _batch = null!;
    private FeatureVectorAssembler _assembler = null!;

    [GlobalSetup]
    public void Setup()
    {
        var plan = BenchmarkEnvironment.LoadPlan();
        _batch = BenchmarkEnvironment.DecodeBatches(plan, BenchmarkEnvironment.EncodePayments(Rows, BenchmarkEnvironment.EventTime), Rows)[0];
        var random = new Random(3);
        for (var row = 0; row < Rows; row++)
        {
            var windows = _batch.WindowRow(row);
            for (var w = 0; w < windows.Length; w++) windows[w] = random.Next(0, 40) * (w + 1.5);
            var lookups = _batch.LookupRow(row);
            for (var l = 0; l < lookups.Length; l++) lookups[l] = row % 16 == 0 ? double.NaN : random.NextDouble() * 50;
        }
        _assembler = new FeatureVectorAssembler(plan);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Rows)]
    public float CopyRawValues()
    {
        var b = _batch;
        for (var k = 0; k < Rows; k++)
        {
            var row = b.Rows[k];
            var destination = b.FeatureRow(k);
            var numerics = b.NumericRow(row);
            var windows = b.WindowRow(row);
            var lookups = b.LookupRow(row);
            var i = 0;
            for (var f = 0; f < numerics.Length && i < destination.Length; f++) destination[i++] = (float)numerics[f];
            for (var f = 0; f < windows.Length && i < destination.Length; f++) destination[i++] = (float)windows[f];
            for (var f = 0; f < lookups.Length && i < destination.Length; f++) destination[i++] = (float)lookups[f];
            while (i < destination.Length) destination[i++] = 0f;
        }
        return b.Features[0];
    }

    [Benchmark(OperationsPerInvoke = Rows)]
    public int Assemble()
    {
        var b = _batch;
        var defaulted = 0;
        for (var k = 0; k < Rows; k++)
        {
            var row = b.Rows[k];
            defaulted += b.DefaultedCounts[row] = _assembler.Assemble(
                b.NumericRow(row), b.TextRow(row), b.WindowRow(row), b.LookupRow(row),
                b.FeatureRow(k), b.DefaultedPerFeature, out b.DefaultedMasks[row]);
        }
        return defaulted;
    }
}
