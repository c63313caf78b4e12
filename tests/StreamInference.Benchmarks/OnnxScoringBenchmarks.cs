using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Benchmarks;

/// <summary>
/// Scoring 1,024 feature vectors of the example model (models/fraud-logreg, latest version) in batches of
/// <see cref="BatchSize"/>:
/// <list type="bullet">
/// <item><c>AllocatingTensors</c> (baseline): per batch a new float[] copy of the input in a
/// <see cref="DenseTensor{T}"/> bound by <see cref="NamedOnnxValue"/>, outputs allocated by ONNX Runtime
/// and read back as tensors — the classic API;</item>
/// <item><c>OnnxScorerScore</c>: what the processor runs — <see cref="OnnxScorer.Score"/>, whose input
/// OrtValue wraps the batch's pooled feature buffer (no copy); ONNX Runtime allocates the outputs;</item>
/// <item><c>PooledInputAndOutput</c>: input and output OrtValues both over pooled managed buffers, the
/// output pre-bound in <c>Run</c> (nothing allocated by ONNX Runtime for the result).</item>
/// </list>
/// All three use one session each with the scorer's options and fetch the same outputs (the score, and the
/// class label where the model has one). Results are per event.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("onnx-score")]
public class OnnxScoringBenchmarks
{
    private const int Events = 1024;

    [Params(1, 4, 16, 64, 256, 1024)]
    public int BatchSize { get; set; }

    private OnnxScorer _scorer = null!;
    private InferenceSession _session = null!;
    private RunOptions _runOptions = null!;
    private EventBatch _batch = null!;
    private string[] _inputNames = [];
    private string[] _outputNames = [];
    private int _featureCount;
    private int _width;
    private float[] _output = [];
    private bool[] _labels = [];
    private readonly long[] _inputShape = new long[2];
    private readonly long[] _outputShape = new long[2];

    [GlobalSetup]
    public void Setup()
    {
        var plan = BenchmarkEnvironment.LoadPlan();
        var directory = ModelRepository.Resolve(BenchmarkEnvironment.ModelsDirectory, "fraud-logreg", "latest");
        _scorer = new OnnxScorer(directory, plan);
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL })
            _session = new InferenceSession(Path.Combine(directory, "model.onnx"), options);
        _runOptions = new RunOptions();
        _featureCount = plan.FeatureCount;
        _width = _scorer.OutputWidth;
        _inputNames = [_scorer.Manifest.Input];
        _outputNames = [.. _scorer.FetchedOutputs];
        if (_scorer.Manifest.ConstantInputs is { Count: > 0 } || _scorer.Manifest.FeatureInputs is not null
            || (_scorer.HasLabels && _session.OutputMetadata[_outputNames[1]].ElementDataType != TensorElementType.Bool))
            throw new InvalidOperationException("The benchmark runs a model with one features input and a bool label output or none (the example model's shape).");

        _batch = new EventBatch(plan, BatchSize, _width);
        var random = new Random(4);
        for (var i = 0; i < _batch.Features.Length; i++) _batch.Features[i] = (float)(random.NextDouble() * 5);
        for (var i = 0; i < BatchSize; i++) _batch.Rows[i] = i;
        _batch.Count = _batch.OkCount = BatchSize;
        _output = new float[BatchSize * _width];
        _labels = new bool[BatchSize];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _scorer.Dispose();
        _session.Dispose();
        _runOptions.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Events)]
    public double AllocatingTensors()
    {
        var rows = BatchSize;
        for (var b = 0; b < Events / rows; b++)
        {
            var input = new DenseTensor<float>(_batch.Features.AsSpan(0, rows * _featureCount).ToArray(), [rows, _featureCount]);
            var inputs = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor(_inputNames[0], input) };
            using var outputs = _session.Run(inputs, _outputNames);
            var scores = ((DenseTensor<float>)outputs.First().AsTensor<float>()).Buffer.Span;
            for (var j = 0; j < scores.Length; j++) _batch.Scores[j] = scores[j];
        }
        return _batch.Scores[0];
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public double OnnxScorerScore()
    {
        for (var b = 0; b < Events / BatchSize; b++) _scorer.Score(_batch);
        return _batch.Scores[0];
    }

    [Benchmark(OperationsPerInvoke = Events)]
    public double PooledInputAndOutput()
    {
        var rows = BatchSize;
        _inputShape[0] = rows;
        _inputShape[1] = _featureCount;
        _outputShape[0] = rows;
        _outputShape[1] = _width;
        for (var b = 0; b < Events / rows; b++)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _batch.Features.AsMemory(0, rows * _featureCount), _inputShape);
            using var output = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _output.AsMemory(0, rows * _width), _outputShape);
            using var label = _outputNames.Length > 1
                ? OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _labels.AsMemory(0, rows), [rows, 1])
                : null;
            _session.Run(_runOptions, _inputNames, [input], _outputNames, label is null ? [output] : [output, label]);
            var scores = _batch.Scores.AsSpan(0, rows * _width);
            for (var j = 0; j < scores.Length; j++) scores[j] = _output[j];
        }
        return _batch.Scores[0];
    }
}
