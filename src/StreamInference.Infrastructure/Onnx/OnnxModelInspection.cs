using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>One input or output of an ONNX graph as ONNX Runtime reports it.</summary>
/// <param name="Type">e.g. <c>float[N,12]</c>, <c>int64[N]</c>, <c>seq(map(int64,float))</c>.</param>
public sealed record OnnxPort(string Name, string Type);

/// <summary>
/// How a graph's inputs are fed: one float [N, F] matrix, or one float [N, 1] input per feature; and the inputs that
/// are neither (ML.NET's export keeps its Label column), which can only be fed a constant.
/// </summary>
/// <param name="Matrix">The float [N, F] input, or null.</param>
/// <param name="PerFeature">One input per feature (graph order), when there is no matrix.</param>
/// <param name="Extra">Every other input.</param>
/// <param name="Batch">The feature inputs' first dimension: -1 when dynamic, else its fixed size.</param>
public sealed record OnnxInputLayout(string? Matrix, IReadOnlyList<string> PerFeature, IReadOnlyList<string> Extra, long Batch)
{
    /// <summary>Infers the layout from the inputs' types and shapes; <paramref name="features"/> (the feature set's names), when known, map per-feature inputs by name.</summary>
    public static OnnxInputLayout Infer(IReadOnlyDictionary<string, NodeMetadata> inputs, IReadOnlyList<string>? features = null)
    {
        static bool IsFloat(NodeMetadata m) => m.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && m.ElementDataType == TensorElementType.Float;
        static bool IsColumn(NodeMetadata m) => IsFloat(m) && (m.Dimensions.Length == 1 || (m.Dimensions.Length == 2 && m.Dimensions[1] == 1));
        var matrices = inputs.Where(kv => IsFloat(kv.Value) && kv.Value.Dimensions.Length == 2 && kv.Value.Dimensions[1] != 1).Select(kv => kv.Key).ToList();
        if (matrices.Count == 1)
            return new(matrices[0], [], [.. inputs.Keys.Where(k => k != matrices[0])], inputs[matrices[0]].Dimensions[0]);
        var columns = inputs.Where(kv => IsColumn(kv.Value) && (features is null || features.Contains(kv.Key))).Select(kv => kv.Key).ToList();
        if (matrices.Count == 0 && columns.Count > 1)
            return new(null, columns, [.. inputs.Keys.Where(k => !columns.Contains(k))], inputs[columns[0]].Dimensions[0]);
        if (matrices.Count == 0 && inputs.Count == 1 && IsColumn(inputs.First().Value))
            return new(inputs.First().Key, [], [], inputs.First().Value.Dimensions[0]);
        return new(null, [], [.. inputs.Keys], -1);
    }
}

/// <summary>
/// What an ONNX model file looks like to the scorer, without a manifest: its inputs and outputs, how they would be
/// fed, what kind of model it seems to be, which output (and column) would be the score, its class labels where it
/// says them, and whether its batch dimension is fixed. <c>streaminference model inspect</c> prints it.
/// </summary>
public sealed record OnnxModelInspection(
    string Path, IReadOnlyList<OnnxPort> Inputs, IReadOnlyList<OnnxPort> Outputs, OnnxInputLayout Layout, string Kind,
    string? ScoreOutput, IReadOnlyList<string> ScoreCandidates, string? LabelOutput, int? ScoreColumns, int? ScoreColumn,
    IReadOnlyList<string>? ClassLabels, string BatchDimension, IReadOnlyList<string> Notes)
{
    /// <param name="features">The feature set's names, when known: inputs named after features are fed those features.</param>
    public static OnnxModelInspection Inspect(string path, IReadOnlyList<string>? features = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"'{path}' does not exist.", path);
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        InferenceSession session;
        try
        {
            session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"ONNX Runtime cannot load '{path}': {e.Message}", e);
        }
        using (session)
        {
            var notes = new List<string>();
            var inputs = session.InputMetadata.Select(kv => new OnnxPort(kv.Key, Describe(kv.Value))).ToList();
            var outputs = session.OutputMetadata.Select(kv => new OnnxPort(kv.Key, Describe(kv.Value))).ToList();

            var layout = OnnxInputLayout.Infer(session.InputMetadata, features);
            if (layout.Matrix is null && layout.PerFeature.Count == 0)
                notes.Add("no float [N, F] input and no float [N, 1] input per feature: name the features input with --input");
            if (layout.PerFeature.Count > 0)
                notes.Add($"one input per feature ({layout.PerFeature.Count}): each is fed its feature's column; the input names must be the feature names");
            foreach (var extra in layout.Extra)
                notes.Add(OnnxFeeds.CanFill(session.InputMetadata[extra])
                    ? $"input '{extra}' is not a feature: import feeds it a constant if the score does not depend on it, and refuses the model otherwise"
                    : $"input '{extra}' is not a feature and cannot be fed a constant: re-export without it");
            var batchDimension = layout.Batch > 0 ? $"fixed {layout.Batch}" : "dynamic";
            if (layout.Batch == 1) notes.Add("fixed batch dimension 1: scored one row per run (correct, but far slower than micro-batches; re-export with a dynamic first dimension N)");
            else if (layout.Batch > 1) notes.Add($"fixed batch dimension {layout.Batch}: cannot score micro-batches; re-export with a dynamic first dimension (N)");

            var candidates = ScoreCandidatesOf(session);
            var scoreOutput = PreferredScore(candidates);
            if (scoreOutput is null && candidates.Count > 1)
                notes.Add($"{candidates.Count} outputs could be the score ({string.Join(", ", candidates)}): name it with --score-output");
            scoreOutput ??= candidates.FirstOrDefault();
            var labelOutput = LabelOf(session, scoreOutput);

            int? columns = null;
            IReadOnlyList<string>? classes = null;
            if (scoreOutput is not null && layout.Batch is <= 1 && session.InputMetadata.Values.All(OnnxFeeds.CanFill))
            {
                try
                {
                    (columns, classes) = Probe(session, scoreOutput);
                }
                catch (OnnxRuntimeException e)
                {
                    notes.Add($"a row of zeros did not run, so the score width and classes are unknown: {e.Message}");
                }
            }
            else if (scoreOutput is not null && session.OutputMetadata[scoreOutput].Dimensions is { Length: 2 } dims && dims[1] > 0)
                columns = (int)dims[1];

            string kind;
            int? scoreColumn = null;
            if (scoreOutput is null) kind = "unsupported: no float tensor or ZipMap output to read scores from";
            else if (labelOutput is not null && columns == 2)
            {
                kind = "binary classifier (label + class probabilities)";
                var positive = classes is null ? (int?)null : DefaultPositiveClass(classes);
                scoreColumn = classes is null ? 1 : positive >= 0 ? positive : null;
                if (scoreColumn is null) notes.Add($"classes {string.Join(", ", classes!)}: name the positive one with the manifest's positiveClass");
            }
            else if (labelOutput is not null && columns == 1) { kind = "binary classifier (label + positive-class probability)"; scoreColumn = 0; }
            else if (labelOutput is not null) kind = $"multiclass classifier ({columns?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} classes)";
            else if (columns is null or 1) { kind = "regressor (one score)"; scoreColumn = 0; }
            else { kind = $"{columns} scores per row"; scoreColumn = columns - 1; }

            return new OnnxModelInspection(path, inputs, outputs, layout, kind, scoreOutput, candidates, labelOutput, columns, scoreColumn, classes, batchDimension, notes);
        }
    }

    /// <summary>
    /// Outputs that could hold scores: float tensors and ZipMap sequences, less the copies of inputs ML.NET's export
    /// adds (<c>&lt;input&gt;.output</c>).
    /// </summary>
    public static List<string> ScoreCandidatesOf(InferenceSession session) =>
        [.. session.OutputMetadata.Where(kv => kv.Value.OnnxValueType == OnnxValueType.ONNX_TYPE_SEQUENCE
                                              || (kv.Value.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && kv.Value.ElementDataType == TensorElementType.Float))
            .Select(kv => kv.Key)
            .Where(name => !IsInputCopy(session, name))];

    /// <summary>ML.NET's export copies each input column to an output named <c>&lt;input&gt;.output</c>; those are never scores or labels.</summary>
    private static bool IsInputCopy(InferenceSession session, string output) =>
        output.EndsWith(".output", StringComparison.Ordinal) && session.InputMetadata.ContainsKey(output[..^".output".Length]);

    /// <summary>
    /// The score among several candidates: the one output named for probabilities (ML.NET's <c>Probability.output</c>
    /// beside its raw <c>Score.output</c>; skl2onnx's <c>probabilities</c>/<c>output_probability</c>); null when that does not single one out.
    /// </summary>
    public static string? PreferredScore(IReadOnlyList<string> candidates)
    {
        if (candidates.Count == 1) return candidates[0];
        var probabilities = candidates.Where(c => c.Contains("probabilit", StringComparison.OrdinalIgnoreCase)).ToList();
        return probabilities.Count == 1 ? probabilities[0] : null;
    }

    /// <summary>The class-label output: an int64, string or bool tensor other than the score, preferring one named for labels.</summary>
    public static string? LabelOf(InferenceSession session, string? scoreOutput)
    {
        var labels = session.OutputMetadata.Where(kv => kv.Key != scoreOutput && !IsInputCopy(session, kv.Key) && kv.Value.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR
                                                         && kv.Value.ElementDataType is TensorElementType.Int64 or TensorElementType.String or TensorElementType.Bool)
            .Select(kv => kv.Key).ToList();
        return labels.FirstOrDefault(l => l.Contains("label", StringComparison.OrdinalIgnoreCase)) ?? labels.FirstOrDefault();
    }

    /// <summary>Runs one row of zeros (every input): the score width, and the class labels a ZipMap output carries.</summary>
    private static (int? Columns, IReadOnlyList<string>? Classes) Probe(InferenceSession session, string scoreOutput)
    {
        var names = session.InputMetadata.Keys.ToArray();
        var values = names.Select(n => OnnxFeeds.Filled(session.InputMetadata[n], 1, 0)).ToArray();
        try
        {
            using var run = new RunOptions();
            using var results = session.Run(run, names, values, [scoreOutput]);
            var scores = results[0];
            if (scores.OnnxType != OnnxValueType.ONNX_TYPE_SEQUENCE)
            {
                var shape = scores.GetTensorTypeAndShape().Shape;
                return (shape.Length >= 2 ? (int)shape[1] : 1, null);
            }
            return ZipMapClasses(scores);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>The first map of a ZipMap output: its column count and its keys (the class labels) as text, in the map's order.</summary>
    public static (int Columns, IReadOnlyList<string>? Classes) ZipMapClasses(OrtValue zipMap)
    {
        using var map = zipMap.GetValue(0, OrtAllocator.DefaultInstance);
        using var keys = map.GetValue(0, OrtAllocator.DefaultInstance);
        using var values = map.GetValue(1, OrtAllocator.DefaultInstance);
        IReadOnlyList<string>? classes = keys.GetTensorTypeAndShape().ElementDataType switch
        {
            TensorElementType.Int64 => keys.GetTensorDataAsSpan<long>().ToArray().Select(k => k.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
            TensorElementType.String => keys.GetStringTensorAsArray(),
            _ => null,
        };
        return ((int)values.GetTensorTypeAndShape().ElementCount, classes);
    }

    /// <summary>The column of the class a binary classifier calls positive by default: the one labelled 1 or true; -1 when none is.</summary>
    public static int DefaultPositiveClass(IReadOnlyList<string> classes) =>
        classes.ToList().FindIndex(c => c is "1" || string.Equals(c, "true", StringComparison.OrdinalIgnoreCase));

    /// <summary>A node's type as the inspection prints it: <c>float[N,12]</c>, <c>int64[N]</c>, <c>seq(map(…,float))</c>.</summary>
    public static string Describe(NodeMetadata m) => m.OnnxValueType switch
    {
        OnnxValueType.ONNX_TYPE_TENSOR => $"{Element(m.ElementDataType)}[{string.Join(",", m.Dimensions.Select((d, i) => d > 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : i == 0 ? "N" : "?"))}]",
        OnnxValueType.ONNX_TYPE_SEQUENCE => "seq(map(…,float))",
        OnnxValueType.ONNX_TYPE_MAP => "map",
        var other => other.ToString(),
    };

    private static string Element(TensorElementType t) => t switch
    {
        TensorElementType.Float => "float",
        TensorElementType.Double => "double",
        TensorElementType.Int64 => "int64",
        TensorElementType.Int32 => "int32",
        TensorElementType.String => "string",
        TensorElementType.Bool => "bool",
        var other => other.ToString().ToLowerInvariant(),
    };
}
