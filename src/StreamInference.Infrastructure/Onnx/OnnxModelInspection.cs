using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>One input or output of an ONNX graph as ONNX Runtime reports it.</summary>
/// <param name="Type">e.g. <c>float[N,12]</c>, <c>int64[N]</c>, <c>seq(map(int64,float))</c>.</param>
public sealed record OnnxPort(string Name, string Type);

/// <summary>
/// What an ONNX model file looks like to the scorer, without a manifest: its inputs and outputs, what kind of model
/// it seems to be, which output (and column) would be the score, its class labels where it says them, and whether
/// its batch dimension is fixed. <c>streaminference model inspect</c> prints it.
/// </summary>
public sealed record OnnxModelInspection(
    string Path, IReadOnlyList<OnnxPort> Inputs, IReadOnlyList<OnnxPort> Outputs, string Kind,
    string? ScoreOutput, string? LabelOutput, int? ScoreColumns, int? ScoreColumn, IReadOnlyList<string>? ClassLabels,
    string BatchDimension, IReadOnlyList<string> Notes)
{
    public static OnnxModelInspection Inspect(string path)
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

            // The features matrix: the widest float [N, F] input (ML.NET's export adds a Label [N, 1] beside Features [N, F]).
            var floatMatrix = session.InputMetadata.Where(kv => kv.Value.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR
                                                               && kv.Value.ElementDataType == TensorElementType.Float && kv.Value.Dimensions.Length == 2)
                .OrderByDescending(kv => kv.Value.Dimensions[1]).ToList();
            var widest = floatMatrix.Count > 0 && (floatMatrix.Count == 1 || floatMatrix[0].Value.Dimensions[1] > floatMatrix[1].Value.Dimensions[1]) ? floatMatrix[0].Key : null;
            if (session.InputMetadata.Count > 1)
                notes.Add(widest is not null
                    ? $"{session.InputMetadata.Count} inputs: the scorer feeds one float [N, F] input ('{widest}'); the others ({string.Join(", ", session.InputMetadata.Keys.Where(k => k != widest))}) must be removed from the export"
                    : $"{session.InputMetadata.Count} inputs and no single float [N, F] matrix (one input per feature?): the scorer needs the features as one float [N, F] input");
            var batch = widest is not null ? session.InputMetadata[widest].Dimensions[0] : -1;
            var batchDimension = batch > 0 ? $"fixed {batch}" : "dynamic";
            if (batch > 0) notes.Add($"fixed batch dimension {batch}: re-export with a dynamic first dimension (N) to score micro-batches");

            string? scoreOutput = null, labelOutput = null;
            foreach (var (name, meta) in session.OutputMetadata)
            {
                if (scoreOutput is null && (meta.OnnxValueType == OnnxValueType.ONNX_TYPE_SEQUENCE
                                            || (meta.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && meta.ElementDataType == TensorElementType.Float)))
                    scoreOutput = name;
                else if (labelOutput is null && meta.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR
                                             && meta.ElementDataType is TensorElementType.Int64 or TensorElementType.String)
                    labelOutput = name;
            }

            int? columns = null;
            IReadOnlyList<string>? classes = null;
            if (scoreOutput is not null && widest is not null && session.InputMetadata.Count == 1)
            {
                try
                {
                    (columns, classes) = Probe(session, widest, session.InputMetadata[widest].Dimensions[1], scoreOutput);
                }
                catch (OnnxRuntimeException e)
                {
                    notes.Add($"a row of zeros did not run, so the score width and classes are unknown: {e.Message}");
                }
            }
            else if (scoreOutput is not null && session.OutputMetadata[scoreOutput].Dimensions is { Length: 2 } dims && dims[1] > 0)
                columns = dims[1];

            string kind;
            int? scoreColumn = null;
            if (scoreOutput is null) kind = "unsupported: no float tensor or ZipMap output to read scores from";
            else if (labelOutput is not null && columns == 2)
            {
                kind = "binary classifier";
                var positive = classes is null ? (int?)null : DefaultPositiveClass(classes);
                scoreColumn = classes is null ? 1 : positive >= 0 ? positive : null;
                if (scoreColumn is null) notes.Add($"classes {string.Join(", ", classes!)}: name the positive one with the manifest's positiveClass");
            }
            else if (labelOutput is not null) kind = $"multiclass classifier ({columns?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} classes)";
            else if (columns is null or 1) { kind = "regressor (one score)"; scoreColumn = 0; }
            else { kind = $"{columns} scores per row"; scoreColumn = columns - 1; }

            return new OnnxModelInspection(path, inputs, outputs, kind, scoreOutput, labelOutput, columns, scoreColumn, classes, batchDimension, notes);
        }
    }

    /// <summary>Runs one row of zeros: the score width, and the class labels a ZipMap output carries.</summary>
    private static (int? Columns, IReadOnlyList<string>? Classes) Probe(InferenceSession session, string input, long features, string scoreOutput)
    {
        if (features <= 0) return (null, null);
        using var value = OrtValue.CreateTensorValueFromMemory(new float[features], [1, features]);
        using var run = new RunOptions();
        using var results = session.Run(run, [input], [value], [scoreOutput]);
        var scores = results[0];
        if (scores.OnnxType != OnnxValueType.ONNX_TYPE_SEQUENCE)
        {
            var shape = scores.GetTensorTypeAndShape().Shape;
            return (shape.Length >= 2 ? (int)shape[1] : 1, null);
        }
        return ZipMapClasses(scores);
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

    private static string Describe(NodeMetadata m) => m.OnnxValueType switch
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
