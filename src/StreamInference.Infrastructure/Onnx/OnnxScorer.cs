using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using StreamInference.Core.Features;
using StreamInference.Core.Pipeline;

namespace StreamInference.Infrastructure.Onnx;

public sealed class OnnxScorerOptions
{
    /// <summary>Threads ONNX Runtime may use inside one operator; 0 lets it choose.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Where the model runs (<see cref="ExecutionDevice"/>).</summary>
    public ExecutionDevice Device { get; set; } = ExecutionDevice.Cpu;

    /// <summary>
    /// CUDA execution provider options (ONNX Runtime's names: gpu_mem_limit, arena_extend_strategy,
    /// cudnn_conv_algo_search, do_copy_in_default_stream, …), applied on top of the device id.
    /// </summary>
    public IReadOnlyDictionary<string, string> CudaProviderOptions { get; set; } = new Dictionary<string, string>();
}

/// <summary>
/// Scores micro-batches with ONNX Runtime. The input OrtValue wraps the batch's pooled feature buffer
/// (no copy, no tensor allocation). Handles the common output shapes: float [N], [N,1] or [N,K];
/// classifier pairs label [N] + probabilities [N,K]; and probabilities as a ZipMap sequence of maps,
/// as scikit-learn and XGBoost converters emit them. A one-row warm-up run at load time discovers the
/// output width and fails early on a model that cannot run.
/// </summary>
public sealed class OnnxScorer : IScorer, IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly int _scoreOutput;
    private readonly int _labelOutput;
    private readonly int _featureCount;
    private readonly long[] _shape = new long[2];

    public OnnxScorer(string modelDirectory, FeaturePlan plan, OnnxScorerOptions? options = null)
    {
        var manifestPath = Path.Combine(modelDirectory, "manifest.json");
        var modelPath = Path.Combine(modelDirectory, "model.onnx");
        if (!File.Exists(manifestPath)) throw new FileNotFoundException($"Model manifest '{manifestPath}' does not exist.");
        if (!File.Exists(modelPath)) throw new FileNotFoundException($"Model file '{modelPath}' does not exist.");
        Manifest = ModelManifest.Load(manifestPath);
        CheckAgainstFeatureSet(Manifest, plan, manifestPath);
        _featureCount = plan.FeatureCount;

        var device = options?.Device ?? ExecutionDevice.Cpu;
        _session = device.Kind == ExecutionDeviceKind.Cpu
            ? CreateSession(modelPath, options, cuda: null)
            : CreateCudaSession(modelPath, options, device);

        try
        {
            if (!_session.InputMetadata.TryGetValue(Manifest.Input, out var input))
                throw new InvalidDataException($"{modelPath}: manifest input '{Manifest.Input}' is not an input of the model (inputs: {string.Join(", ", _session.InputNames)}).");
            if (input.ElementDataType != TensorElementType.Float || input.Dimensions.Length != 2)
                throw new InvalidDataException($"{modelPath}: input '{Manifest.Input}' must be float [N, {_featureCount}], found {input.ElementDataType} [{string.Join(", ", input.Dimensions)}].");
            if (input.Dimensions[1] > 0 && input.Dimensions[1] != _featureCount)
                throw new InvalidDataException($"{modelPath}: input '{Manifest.Input}' has {input.Dimensions[1]} columns, the feature set has {_featureCount}.");
            if (input.Dimensions[0] > 0)
                throw new InvalidDataException($"{modelPath}: input '{Manifest.Input}' has a fixed batch dimension of {input.Dimensions[0]}; the scorer runs micro-batches of any size: " +
                                               "re-export the model with a dynamic first dimension (N, e.g. None in skl2onnx / onnxmltools initial types).");
            if (_session.InputMetadata.Count > 1)
                throw new InvalidDataException($"{modelPath}: the model has inputs {string.Join(", ", _session.InputNames)}, and the scorer feeds only '{Manifest.Input}' (the feature matrix): " +
                                               "re-export without the others (ML.NET's ONNX export keeps the Label column unless it is dropped before export; one input per feature must be concatenated into one [N, F] input).");
            _inputNames = [Manifest.Input];
            _outputNames = [.. _session.OutputNames];
            _scoreOutput = PickScoreOutput(modelPath);
            _labelOutput = PickLabelOutput();
            // Warm up with one row of zeros: allocates ORT's arena and tells the real output width. On
            // CUDA this is the first real run (kernels for this GPU, memory): a failure here is the
            // device's, and auto falls back to the CPU for it like for a provider that does not load.
            try
            {
                OutputWidth = WarmUp();
            }
            catch (OnnxRuntimeException e) when (ExecutionProvider != "cpu")
            {
                var reason = $"the first run on {ExecutionProvider} failed: {e.Message}";
                if (device.Kind != ExecutionDeviceKind.Auto)
                    throw new InvalidOperationException($"Model:Device={device} cannot be met: {reason} (Model:Device=auto falls back to the CPU instead).", e);
                _session.Dispose();
                _session = CreateSession(modelPath, options, cuda: null);
                ExecutionProvider = "cpu";
                FallbackReason = reason;
                OutputWidth = WarmUp();
            }
            PrimaryScoreIndex = ChoosePrimaryScore(manifestPath);
            if (PrimaryScoreIndex < 0 || PrimaryScoreIndex >= OutputWidth)
                throw new InvalidDataException($"{manifestPath}: primaryScoreIndex {PrimaryScoreIndex} is outside the model's {OutputWidth} score columns.");
            Identity = new ModelIdentity(Manifest.Name, Manifest.Version, PrimaryScoreIndex);
            Directory = modelDirectory;
        }
        catch
        {
            _session.Dispose();
            _runOptions.Dispose();
            throw;
        }
    }

    /// <summary>Where this model runs: <c>cpu</c> or <c>cuda:&lt;id&gt;</c>.</summary>
    public string ExecutionProvider { get; private set; } = "cpu";

    /// <summary>Why <c>Model:Device=auto</c> fell back to the CPU; null when it did not.</summary>
    public string? FallbackReason { get; private set; }

    private InferenceSession CreateCudaSession(string modelPath, OnnxScorerOptions? options, ExecutionDevice device)
    {
        try
        {
            var session = CreateSession(modelPath, options, device.DeviceId);
            ExecutionProvider = $"cuda:{device.DeviceId}";
            return session;
        }
        catch (CudaUnavailableException e) when (device.Kind == ExecutionDeviceKind.Auto)
        {
            FallbackReason = e.Message;
            return CreateSession(modelPath, options, cuda: null);
        }
        catch (CudaUnavailableException e)
        {
            throw new InvalidOperationException(
                $"Model:Device={device} cannot be met: {e.Message} (Model:Device=auto falls back to the CPU instead).", e);
        }
    }

    private static InferenceSession CreateSession(string modelPath, OnnxScorerOptions? options, int? cuda)
    {
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (options?.IntraOpThreads > 0) sessionOptions.IntraOpNumThreads = options.IntraOpThreads;
        if (cuda is { } id)
        {
            try
            {
                // Created inside the try: a CPU build of ONNX Runtime refuses the options object already.
                using var provider = new OrtCUDAProviderOptions();
                var settings = new Dictionary<string, string>(options?.CudaProviderOptions ?? new Dictionary<string, string>())
                {
                    ["device_id"] = id.ToString(System.Globalization.CultureInfo.InvariantCulture),
                };
                provider.UpdateOptions(settings);
                sessionOptions.AppendExecutionProvider_CUDA(provider);
            }
            catch (OnnxRuntimeException e) when (e.Message.Contains("provider option", StringComparison.OrdinalIgnoreCase))
            {
                // A misspelled or malformed Model:Cuda setting is a configuration error, never a reason to fall back.
                throw new InvalidDataException($"Model:Cuda: ONNX Runtime refused the CUDA provider options: {e.Message}", e);
            }
            catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException or NotSupportedException)
            {
                // The CPU package of ONNX Runtime has no CUDA provider; a GPU build without the CUDA
                // libraries, or without the device, fails here too.
                var hint = PackageFlavor == "Cpu"
                    ? " (this build uses the CPU package Microsoft.ML.OnnxRuntime, which has no CUDA provider; build with -p:OnnxRuntimeFlavor=Gpu)"
                    : " (the Gpu package of ONNX Runtime 1.31 needs the CUDA 13 libraries libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and cuDNN 9 on the library path, an NVIDIA driver, and the device)";
                throw new CudaUnavailableException($"ONNX Runtime's CUDA execution provider did not load for device {id}{hint}: {e.Message}", e);
            }
        }
        try
        {
            return new InferenceSession(modelPath, sessionOptions);
        }
        catch (OnnxRuntimeException e) when (cuda is not null)
        {
            throw new CudaUnavailableException($"ONNX Runtime could not create a CUDA session on device {cuda}: {e.Message}", e);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"ONNX Runtime cannot load '{modelPath}': {e.Message}", e);
        }
    }

    /// <summary>The ONNX Runtime package this build references: Cpu or Gpu (-p:OnnxRuntimeFlavor).</summary>
#if ONNXRUNTIME_GPU
    public static string PackageFlavor { get; } = "Gpu";
#else
    public static string PackageFlavor { get; } = "Cpu";
#endif

    private sealed class CudaUnavailableException(string message, Exception inner) : Exception(message, inner);

    public ModelManifest Manifest { get; }
    public ModelIdentity Identity { get; } = null!;
    /// <summary>The version directory the model was loaded from.</summary>
    public string Directory { get; } = null!;
    public string ModelName => Manifest.Name;
    public string ModelVersion => Manifest.Version;
    public int OutputWidth { get; }
    public int PrimaryScoreIndex { get; }
    public bool HasLabels => _labelOutput >= 0;

    /// <summary>The training/serving skew guard: the model must have been trained on exactly this feature set.</summary>
    public static void CheckAgainstFeatureSet(ModelManifest manifest, FeaturePlan plan, string manifestPath)
    {
        if (manifest.FeatureSet != plan.Name || manifest.FeatureSetVersion != plan.Version)
            throw new InvalidDataException(
                $"{manifestPath}: model {manifest.Name}@{manifest.Version} was trained on feature set '{manifest.FeatureSet}' v{manifest.FeatureSetVersion}, " +
                $"but the loaded definitions are '{plan.Name}' v{plan.Version}. Retrain the model or load the matching definitions.");
        var expected = plan.Features.Select(f => f.Name).ToList();
        if (!manifest.Features.SequenceEqual(expected))
            throw new InvalidDataException(
                $"{manifestPath}: feature order [{string.Join(", ", manifest.Features)}] differs from feature set '{plan.Name}' v{plan.Version} [{string.Join(", ", expected)}].");
    }

    /// <summary>
    /// The class labels of the score columns, when the model says them: the keys of a ZipMap output (from the warm-up
    /// run). Null for plain tensors.
    /// </summary>
    public IReadOnlyList<string>? ClassLabels { get; private set; }

    /// <summary>
    /// The score column published as <c>score</c>. A binary classifier (a label output and two score columns) publishes
    /// its positive class's probability: the manifest's positiveClass, else the class labelled 1 or true; a
    /// primaryScoreIndex that points elsewhere is an error rather than a silently inverted score. Otherwise the
    /// manifest's primaryScoreIndex, else the last column.
    /// </summary>
    private int ChoosePrimaryScore(string manifestPath)
    {
        var declared = Manifest.PrimaryScoreIndex;
        if (!(HasLabels && OutputWidth == 2)) return declared ?? OutputWidth - 1;
        int? positive = null;
        if (ClassLabels is { Count: 2 } labels)
        {
            if (Manifest.PositiveClass is { } named)
            {
                var i = labels.ToList().FindIndex(l => string.Equals(l, named, StringComparison.OrdinalIgnoreCase));
                if (i < 0) throw new InvalidDataException($"{manifestPath}: positiveClass '{named}' is not one of the model's classes ({string.Join(", ", labels)}).");
                positive = i;
            }
            else
            {
                var i = OnnxModelInspection.DefaultPositiveClass(labels);
                if (i >= 0) positive = i;
                else if (declared is null)
                    throw new InvalidDataException($"{manifestPath}: binary classifier with classes {labels[0]} and {labels[1]}: say which is positive (its probability is the published score) with positiveClass.");
            }
        }
        else if (Manifest.PositiveClass is null)
        {
            positive = 1;   // probability tensors list the classes in label order (0, 1)
        }
        if (positive is { } p && declared is { } d && d != p)
            throw new InvalidDataException($"{manifestPath}: primaryScoreIndex {d} would publish the probability of class {ClassName(d)} as the score, " +
                                           $"but a binary classifier's score is its positive class's ({ClassName(p)}, column {p}): remove primaryScoreIndex, " +
                                           "or set positiveClass to the class you mean.");
        return positive ?? declared ?? OutputWidth - 1;
    }

    private string ClassName(int column) => ClassLabels is { } labels && column < labels.Count ? labels[column] : column.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private int PickScoreOutput(string modelPath)
    {
        if (Manifest.ScoreOutput is { } named)
        {
            var i = Array.IndexOf(_outputNames, named);
            if (i < 0) throw new InvalidDataException($"{modelPath}: manifest scoreOutput '{named}' is not an output (outputs: {string.Join(", ", _outputNames)}).");
            return i;
        }
        for (var i = 0; i < _outputNames.Length; i++)
        {
            var m = _session.OutputMetadata[_outputNames[i]];
            if (m.OnnxValueType == OnnxValueType.ONNX_TYPE_SEQUENCE) return i;
            if (m.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && m.ElementDataType == TensorElementType.Float) return i;
        }
        throw new InvalidDataException($"{modelPath}: no float tensor or ZipMap output to read scores from (outputs: {string.Join(", ", _outputNames)}).");
    }

    private int PickLabelOutput()
    {
        if (Manifest.LabelOutput is { } named) return Array.IndexOf(_outputNames, named);
        for (var i = 0; i < _outputNames.Length; i++)
        {
            if (i == _scoreOutput) continue;
            var m = _session.OutputMetadata[_outputNames[i]];
            if (m.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && m.ElementDataType is TensorElementType.Int64 or TensorElementType.String)
                return i;
        }
        return -1;
    }

    private int WarmUp()
    {
        var zeros = new float[_featureCount];
        using var input = OrtValue.CreateTensorValueFromMemory(zeros, [1, _featureCount]);
        using var outputs = _session.Run(_runOptions, _inputNames, [input], _outputNames);
        var scores = outputs[_scoreOutput];
        if (scores.OnnxType == OnnxValueType.ONNX_TYPE_SEQUENCE)
        {
            var (columns, classes) = OnnxModelInspection.ZipMapClasses(scores);
            ClassLabels = classes;
            return columns;
        }
        var shape = scores.GetTensorTypeAndShape().Shape;
        return shape.Length >= 2 ? (int)shape[1] : 1;
    }

    public void Score(EventBatch batch)
    {
        batch.ScoredBy = Identity;
        var rows = batch.OkCount;
        _shape[0] = rows;
        _shape[1] = _featureCount;
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance,
            batch.Features.AsMemory(0, rows * _featureCount), _shape);
        using var outputs = _session.Run(_runOptions, _inputNames, [input], _outputNames);

        var scores = outputs[_scoreOutput];
        var width = OutputWidth;
        if (scores.OnnxType == OnnxValueType.ONNX_TYPE_SEQUENCE)
        {
            var count = scores.GetValueCount();
            if (count != rows) throw new InvalidDataException($"ZipMap output has {count} maps for {rows} rows.");
            for (var k = 0; k < rows; k++)
            {
                using var map = scores.GetValue(k, OrtAllocator.DefaultInstance);
                using var values = map.GetValue(1, OrtAllocator.DefaultInstance);
                var span = values.GetTensorDataAsSpan<float>();
                var dest = batch.ScoreRow(k);
                for (var j = 0; j < width; j++) dest[j] = j < span.Length ? span[j] : double.NaN;
            }
        }
        else
        {
            var span = scores.GetTensorDataAsSpan<float>();
            if (span.Length != rows * width)
                throw new InvalidDataException($"Score output '{_outputNames[_scoreOutput]}' has {span.Length} values for {rows} rows × {width}.");
            var dest = batch.Scores.AsSpan(0, rows * width);
            for (var j = 0; j < dest.Length; j++) dest[j] = span[j];
        }

        if (_labelOutput >= 0)
        {
            var labels = outputs[_labelOutput];
            var type = labels.GetTensorTypeAndShape().ElementDataType;
            if (type == TensorElementType.Int64)
            {
                var span = labels.GetTensorDataAsSpan<long>();
                for (var k = 0; k < rows; k++) batch.Labels[k] = LabelText(span[k]);
            }
            else if (type == TensorElementType.String)
            {
                var all = labels.GetStringTensorAsArray();
                for (var k = 0; k < rows; k++) batch.Labels[k] = all[k];
            }
        }
    }

    private static readonly string[] SmallLabels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    private static string LabelText(long v) => v is >= 0 and < 10 ? SmallLabels[v] : v.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }
}
