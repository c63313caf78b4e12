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
    private string[] _inputNames = [];
    private OrtValue?[] _inputValues = [];
    private NodeMetadata[] _featureInputs = [];       // one per feature (featureInputs), else empty
    private ConstantFeed[] _constants = [];
    private float[][] _columns = [];
    private bool _perRow;
    private readonly string[] _outputNames;
    private readonly int _scoreOutput;
    private readonly int _labelOutput;
    // What each run fetches: the score output, then the label output when there is one (ML.NET's export also
    // copies its inputs to outputs; those are never computed).
    private string[] _fetch = [];
    private readonly int _featureCount;        // the feature set's width: the batch buffer's row length
    private readonly int _modelWidth;          // the features this model reads (its manifest's), in its input order
    private readonly int[]? _projection;       // feature-set column of each model column; null when they are the same
    private float[] _projected = [];
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
        _projection = Projection(Manifest, plan);
        _modelWidth = Manifest.Features.Count;

        var device = options?.Device ?? ExecutionDevice.Cpu;
        _session = device.Kind == ExecutionDeviceKind.Cpu
            ? CreateSession(modelPath, options, cuda: null)
            : CreateCudaSession(modelPath, options, device);

        try
        {
            BindInputs(modelPath, manifestPath);
            _outputNames = [.. _session.OutputNames];
            _scoreOutput = PickScoreOutput(modelPath);
            _labelOutput = PickLabelOutput(modelPath);
            _fetch = _labelOutput >= 0 ? [_outputNames[_scoreOutput], _outputNames[_labelOutput]] : [_outputNames[_scoreOutput]];
            // Warm up with one row of zeros: allocates ORT's arena and tells the real output width. On
            // CUDA this is the first real run (kernels for this GPU, memory): a failure here is the
            // device's, and auto falls back to the CPU for it like for a provider that does not load.
            // On the CPU it is the model's: one line, not ONNX Runtime's exception.
            int WarmUpOnCpu()
            {
                try
                {
                    return WarmUp();
                }
                catch (OnnxRuntimeException e)
                {
                    throw new InvalidDataException($"{modelPath}: ONNX Runtime could not score one row of zeros: {e.Message}", e);
                }
            }
            try
            {
                OutputWidth = ExecutionProvider == "cpu" ? WarmUpOnCpu() : WarmUp();
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
                OutputWidth = WarmUpOnCpu();
            }
            PrimaryScoreIndex = ChoosePrimaryScore(manifestPath);
            if (PrimaryScoreIndex < 0 || PrimaryScoreIndex >= OutputWidth)
                throw new InvalidDataException($"{manifestPath}: primaryScoreIndex {PrimaryScoreIndex} is outside the model's {OutputWidth} score columns.");
            PositiveLabel = ChoosePositiveLabel();
            Identity = new ModelIdentity(Manifest.Name, Manifest.Version, PrimaryScoreIndex) { Directory = modelDirectory };
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

    /// <summary>The outputs each run fetches: the score output, then the label output when there is one.</summary>
    public IReadOnlyList<string> FetchedOutputs => _fetch;

    /// <summary>The training/serving skew guard: the model must have been trained on exactly this feature set.</summary>
    public static void CheckAgainstFeatureSet(ModelManifest manifest, FeaturePlan plan, string manifestPath)
    {
        if (manifest.FeatureSet != plan.Name || manifest.FeatureSetVersion != plan.Version)
            throw new InvalidDataException(
                $"{manifestPath}: model {manifest.Name}@{manifest.Version} was trained on feature set '{manifest.FeatureSet}' v{manifest.FeatureSetVersion}, " +
                $"but the loaded definitions are '{plan.Name}' v{plan.Version}. Retrain the model or load the matching definitions.");
        var names = plan.Features.Select(f => f.Name).ToHashSet();
        if (manifest.Features.Count == 0)
            throw new InvalidDataException($"{manifestPath}: the manifest lists no features; list the features the model reads, by name, in its input order.");
        var unknown = manifest.Features.Where(f => !names.Contains(f)).ToList();
        if (unknown.Count > 0)
            throw new InvalidDataException($"{manifestPath}: feature(s) {string.Join(", ", unknown)} are not in feature set '{plan.Name}' v{plan.Version} " +
                                           $"({string.Join(", ", plan.Features.Select(f => f.Name))}).");
        var twice = manifest.Features.GroupBy(f => f).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (twice.Count > 0)
            throw new InvalidDataException($"{manifestPath}: feature(s) {string.Join(", ", twice)} are listed more than once.");
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
            var m = _session.OutputMetadata[named];
            if (!(m.OnnxValueType == OnnxValueType.ONNX_TYPE_SEQUENCE || (m.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && m.ElementDataType == TensorElementType.Float)))
                throw new InvalidDataException($"{modelPath}: score output '{named}' is {OnnxModelInspection.Describe(m)}; scores are read from a float tensor or a ZipMap sequence of maps.");
            return i;
        }
        var candidates = OnnxModelInspection.ScoreCandidatesOf(_session);
        if (candidates.Count == 0)
            throw new InvalidDataException($"{modelPath}: no float tensor or ZipMap output to read scores from (outputs: {string.Join(", ", _outputNames)}).");
        return Array.IndexOf(_outputNames, OnnxModelInspection.PreferredScore(candidates)
            ?? throw new InvalidDataException($"{modelPath}: {candidates.Count} outputs could be the score ({string.Join(", ", candidates)}): name it with the manifest's scoreOutput."));
    }

    private int PickLabelOutput(string modelPath)
    {
        var name = Manifest.LabelOutput ?? OnnxModelInspection.LabelOf(_session, _outputNames[_scoreOutput]);
        if (name is null) return -1;
        var i = Array.IndexOf(_outputNames, name);
        if (i < 0) throw new InvalidDataException($"{modelPath}: manifest labelOutput '{name}' is not an output (outputs: {string.Join(", ", _outputNames)}).");
        var m = _session.OutputMetadata[name];
        if (m.OnnxValueType != OnnxValueType.ONNX_TYPE_TENSOR || m.ElementDataType is not (TensorElementType.Int64 or TensorElementType.String or TensorElementType.Bool)
            || m.Dimensions.Length > 2 || (m.Dimensions.Length == 2 && m.Dimensions[1] > 1))
            throw new InvalidDataException($"{modelPath}: label output '{name}' is {OnnxModelInspection.Describe(m)}; class labels are read from an int64, string or bool tensor [N] or [N, 1].");
        _labelType = m.ElementDataType;
        return i;
    }

    private TensorElementType _labelType;


    /// <summary>
    /// The label text of the class whose probability is the score, for binary classifiers: the ZipMap key of the score
    /// column, the manifest's positiveClass, else what the label's type says (true; the column index for int64 labels
    /// beside two probability columns, 1 beside one). Null when that cannot be known (string labels beside a tensor).
    /// </summary>
    public string? PositiveLabel { get; private set; }

    private string? ChoosePositiveLabel()
    {
        if (!HasLabels || OutputWidth > 2) return null;
        if (ClassLabels is { } classes && PrimaryScoreIndex < classes.Count) return classes[PrimaryScoreIndex];
        if (Manifest.PositiveClass is { } named) return named;
        return _labelType switch
        {
            TensorElementType.Bool => "true",
            TensorElementType.Int64 => OutputWidth == 2 ? LabelText(PrimaryScoreIndex) : "1",
            _ => null,
        };
    }

    /// <summary>
    /// Works out how each model input is fed and refuses what cannot be: the features as one float [N, F] matrix
    /// (manifest input) or one float [N, 1] input per feature (featureInputs); constantInputs fed their constant;
    /// anything else is an error that says how to settle it. A fixed batch dimension of 1 is scored row by row.
    /// </summary>
    private void BindInputs(string modelPath, string manifestPath)
    {
        var inputs = _session.InputMetadata;
        var names = new List<string>();
        long batch;
        if (Manifest.FeatureInputs is { } perFeature)
        {
            if (perFeature.Count != _modelWidth)
                throw new InvalidDataException($"{manifestPath}: featureInputs names {perFeature.Count} inputs for the manifest's {_modelWidth} features.");
            foreach (var name in perFeature)
            {
                if (!inputs.TryGetValue(name, out var m))
                    throw new InvalidDataException($"{manifestPath}: featureInputs '{name}' is not an input of the model (inputs: {string.Join(", ", inputs.Keys)}).");
                if (m.ElementDataType != TensorElementType.Float || !(m.Dimensions.Length == 1 || (m.Dimensions.Length == 2 && m.Dimensions[1] == 1)))
                    throw new InvalidDataException($"{modelPath}: input '{name}' must be float [N, 1] (one feature), found {m.ElementDataType} [{string.Join(", ", m.Dimensions)}].");
            }
            _featureInputs = [.. perFeature.Select(n => inputs[n])];
            _columns = [.. perFeature.Select(_ => Array.Empty<float>())];
            names.AddRange(perFeature);
            batch = _featureInputs[0].Dimensions[0];
        }
        else
        {
            if (!inputs.TryGetValue(Manifest.Input, out var input))
                throw new InvalidDataException($"{modelPath}: manifest input '{Manifest.Input}' is not an input of the model (inputs: {string.Join(", ", inputs.Keys)}).");
            if (input.ElementDataType != TensorElementType.Float || input.Dimensions.Length != 2)
                throw new InvalidDataException($"{modelPath}: input '{Manifest.Input}' must be float [N, {_modelWidth}], found {input.ElementDataType} [{string.Join(", ", input.Dimensions)}].");
            if (input.Dimensions[1] > 0 && input.Dimensions[1] != _modelWidth)
                throw new InvalidDataException($"{modelPath}: input '{Manifest.Input}' has {input.Dimensions[1]} columns, the manifest lists {_modelWidth} features.");
            names.Add(Manifest.Input);
            batch = input.Dimensions[0];
        }
        if (batch > 1)
            throw new InvalidDataException($"{modelPath}: the features input has a fixed batch dimension of {batch}; the scorer runs micro-batches of any size: " +
                                           "re-export the model with a dynamic first dimension (N, e.g. None in skl2onnx / onnxmltools initial types).");
        if (batch == 1)
        {
            _perRow = true;
            Warnings.Add($"{Manifest.Name}@{Manifest.Version}: the features input has a fixed batch dimension of 1, so every row is a separate ONNX Runtime run " +
                         "(correct, but far slower than micro-batches): re-export with a dynamic first dimension (N).");
        }

        var constants = new List<ConstantFeed>();
        foreach (var (name, value) in Manifest.ConstantInputs ?? [])
        {
            if (!inputs.TryGetValue(name, out var m))
                throw new InvalidDataException($"{manifestPath}: constantInputs '{name}' is not an input of the model (inputs: {string.Join(", ", inputs.Keys)}).");
            if (names.Contains(name))
                throw new InvalidDataException($"{manifestPath}: input '{name}' is fed the features; it cannot also be a constant input.");
            if (!OnnxFeeds.CanFill(m))
                throw new InvalidDataException($"{modelPath}: input '{name}' is {m.OnnxValueType} {m.ElementDataType}, which cannot be fed a constant.");
            constants.Add(new ConstantFeed(m, value));
            names.Add(name);
        }
        var unfed = inputs.Keys.Where(k => !names.Contains(k)).ToList();
        if (unfed.Count > 0)
            throw new InvalidDataException($"{modelPath}: input(s) {string.Join(", ", unfed)} would not be fed: the scorer feeds the features ('{string.Join("', '", names.Take(names.Count - constants.Count))}') " +
                                           "and the manifest's constantInputs. 'model import' declares inputs the score does not depend on (ML.NET's Label); otherwise re-export the model without them.");
        _constants = [.. constants];
        _inputNames = [.. names];
        _inputValues = new OrtValue?[names.Count];
    }

    /// <summary>Messages about how the model is run that an operator should see (e.g. a fixed batch dimension of 1).</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>A non-feature input fed one value, from a buffer grown to the largest batch seen.</summary>
    private sealed class ConstantFeed(NodeMetadata meta, double value)
    {
        private Array _buffer = Array.Empty<float>();

        public OrtValue Create(int rows)
        {
            if (meta.ElementDataType == TensorElementType.String) return OnnxFeeds.Filled(meta, rows, value);
            var shape = OnnxFeeds.Shape(meta, rows);
            var count = (int)shape.Aggregate(1L, (a, b) => a * b);
            if (_buffer.Length < count) _buffer = OnnxFeeds.Buffer(meta, count, value);
            return OnnxFeeds.Over(_buffer, count, shape);
        }
    }

    /// <summary>Runs one row of zeros through every input: allocates ORT's arena and tells the real output width (and a ZipMap's classes).</summary>
    private int WarmUp()
    {
        var values = _inputNames.Select((n, i) => i == 0 && _featureInputs.Length == 0
            ? OrtValue.CreateTensorValueFromMemory(new float[_modelWidth], [1, _modelWidth])
            : OnnxFeeds.Filled(_session.InputMetadata[n], 1, Manifest.ConstantInputs?.TryGetValue(n, out var c) == true ? c : 0)).ToArray();
        try
        {
            using var outputs = _session.Run(_runOptions, _inputNames, values, _fetch);
            var scores = outputs[0];
            if (scores.OnnxType == OnnxValueType.ONNX_TYPE_SEQUENCE)
            {
                var (columns, classes) = OnnxModelInspection.ZipMapClasses(scores);
                ClassLabels = classes;
                return columns;
            }
            var shape = scores.GetTensorTypeAndShape().Shape;
            return shape.Length >= 2 ? (int)shape[1] : 1;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>
    /// The model's columns in the feature set: null when the manifest lists the feature set's features in its order
    /// (the batch buffer is the model input, no copy); otherwise each model column's feature-set index. A model may
    /// read any subset of the features, in any order, by name; features are computed once per batch for every model.
    /// </summary>
    private static int[]? Projection(ModelManifest manifest, FeaturePlan plan)
    {
        var names = plan.Features.Select(f => f.Name).ToList();
        if (manifest.Features.SequenceEqual(names)) return null;
        return [.. manifest.Features.Select(name => names.IndexOf(name))];
    }

    /// <summary>The model's columns of rows [first, first + rows), copied into a pooled row-major buffer.</summary>
    private Memory<float> Project(float[] features, int capacity, int first, int rows)
    {
        var width = _modelWidth;
        var f = _featureCount;
        if (_projected.Length < rows * width) _projected = new float[Math.Max(rows, capacity) * width];
        var map = _projection!;
        for (var k = 0; k < rows; k++)
        {
            var src = (first + k) * f;
            var dst = k * width;
            for (var j = 0; j < width; j++) _projected[dst + j] = features[src + map[j]];
        }
        return _projected.AsMemory(0, rows * width);
    }

    public void Score(EventBatch batch)
    {
        batch.ScoredBy = Identity;
        ScoreInto(batch, batch.Scores, batch.Labels);
    }

    /// <summary>
    /// Scores the batch's clean rows into other buffers (a shadow model beside the champion, on the same feature
    /// vectors): <paramref name="scores"/> holds <see cref="OutputWidth"/> values per row, <paramref name="labels"/> one label.
    /// </summary>
    public void ScoreInto(EventBatch batch, double[] scores, string?[] labels) => ScoreFeatures(batch.Features, batch.OkCount, batch.Capacity, scores, labels);

    /// <summary>
    /// Scores the first <paramref name="rows"/> feature vectors of <paramref name="features"/> (row-major, the feature
    /// set's width; e.g. the rows of a batch a canary serves, gathered): <see cref="OutputWidth"/> scores and one label per row.
    /// </summary>
    public void ScoreFeatures(float[] features, int rows, int capacity, double[] scores, string?[] labels)
    {
        if (rows == 0) return;
        if (features.Length < rows * _featureCount) throw new ArgumentException($"{features.Length} feature values are fewer than {rows} rows × {_featureCount}.");
        if (scores.Length < rows * OutputWidth || labels.Length < rows)
            throw new ArgumentException($"Output buffers for {rows} rows of {OutputWidth} scores are too small.");
        if (_perRow)
            for (var k = 0; k < rows; k++) Run(features, capacity, k, 1, scores, labels);
        else
            Run(features, capacity, 0, rows, scores, labels);
    }

    /// <summary>Scores rows [first, first + rows) of the feature buffer in one ONNX Runtime run.</summary>
    private void Run(float[] features, int capacity, int first, int rows, double[] scoreTarget, string?[] labelTarget)
    {
        var values = _inputValues;
        try
        {
            var f = _featureCount;
            var width = _modelWidth;
            if (_featureInputs.Length == 0)
            {
                _shape[0] = rows;
                _shape[1] = width;
                values[0] = _projection is null
                    ? OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, features.AsMemory(first * f, rows * f), _shape)
                    : OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, Project(features, capacity, first, rows), _shape);
            }
            else
            {
                // One input per feature: each column is copied out of the row-major batch buffer.
                for (var j = 0; j < width; j++)
                {
                    if (_columns[j].Length < rows) _columns[j] = new float[Math.Max(rows, capacity)];
                    var column = _columns[j];
                    var source = _projection?[j] ?? j;
                    for (var k = 0; k < rows; k++) column[k] = features[(first + k) * f + source];
                    values[j] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, column.AsMemory(0, rows), OnnxFeeds.Shape(_featureInputs[j], rows));
                }
            }
            var c0 = _inputNames.Length - _constants.Length;
            for (var c = 0; c < _constants.Length; c++) values[c0 + c] = _constants[c].Create(rows);

            using var outputs = _session.Run(_runOptions, _inputNames, values!, _fetch);
            ReadScores(outputs[0], scoreTarget, first, rows);
            if (_labelOutput >= 0) ReadLabels(outputs[1], labelTarget, first, rows);
        }
        finally
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i]?.Dispose();
                values[i] = null;
            }
        }
    }

    private void ReadScores(OrtValue scores, double[] target, int first, int rows)
    {
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
                var dest = target.AsSpan((first + k) * width, width);
                for (var j = 0; j < width; j++) dest[j] = j < span.Length ? span[j] : double.NaN;
            }
        }
        else
        {
            var span = scores.GetTensorDataAsSpan<float>();
            if (span.Length != rows * width)
                throw new InvalidDataException($"Score output '{_outputNames[_scoreOutput]}' has {span.Length} values for {rows} rows × {width}.");
            var dest = target.AsSpan(first * width, rows * width);
            for (var j = 0; j < dest.Length; j++) dest[j] = span[j];
        }
    }

    private static void ReadLabels(OrtValue labels, string?[] target, int first, int rows)
    {
        switch (labels.GetTensorTypeAndShape().ElementDataType)
        {
            case TensorElementType.Int64:
            {
                var span = labels.GetTensorDataAsSpan<long>();
                for (var k = 0; k < rows; k++) target[first + k] = LabelText(span[k]);
                break;
            }
            case TensorElementType.String:
            {
                var all = labels.GetStringTensorAsArray();
                for (var k = 0; k < rows; k++) target[first + k] = all[k];
                break;
            }
            case TensorElementType.Bool:
            {
                var span = labels.GetTensorDataAsSpan<bool>();
                for (var k = 0; k < rows; k++) target[first + k] = span[k] ? "true" : "false";
                break;
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
