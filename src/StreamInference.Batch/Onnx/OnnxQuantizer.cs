using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace StreamInference.Batch.Onnx;

/// <summary>What <c>model quantize</c> writes.</summary>
public enum QuantizationType
{
    /// <summary>
    /// Dynamic INT8: MatMul/Gemm weights as int8, symmetric per output column; activations quantized to uint8 per
    /// tensor at run time (DynamicQuantizeLinear → MatMulInteger → Cast → Mul, which ONNX Runtime fuses into one kernel).
    /// </summary>
    Int8,

    /// <summary>FP16 MatMul/Gemm: weights as float16, the product computed in float16 between two casts; the rest stays float.</summary>
    Fp16,
}

/// <param name="MinDimension">A weight is converted only when both its dimensions are at least this (a GEMV over a
/// handful of columns gains nothing and loses precision).</param>
/// <param name="ReduceRange">INT8: 7-bit weights (±63), for processors without VNNI, whose u8×s8 multiply-add saturates at 16 bits.</param>
public sealed record QuantizationOptions(QuantizationType Type = QuantizationType.Int8, int MinDimension = 16, bool ReduceRange = false)
{
    public void Validate()
    {
        if (MinDimension is < 1 or > 1_000_000) throw new ArgumentException($"--min-dimension must be between 1 and 1000000 (was {MinDimension}).");
        if (ReduceRange && Type != QuantizationType.Int8) throw new ArgumentException("--reduce-range applies to int8 only.");
    }

    public string Describe() => Type switch
    {
        QuantizationType.Int8 => $"dynamic INT8 (int8 weights per output column{(ReduceRange ? ", 7-bit range" : "")}, uint8 activations per tensor at run time)",
        _ => "FP16 MatMul/Gemm (float16 weights and products, float elsewhere)",
    };

    public string Flags() => $"--type {(Type == QuantizationType.Int8 ? "int8" : "fp16")} --min-dimension {MinDimension}{(ReduceRange ? " --reduce-range" : "")}";
}

/// <summary>One MatMul/Gemm and what became of it.</summary>
/// <param name="Node">The node's name (or its output's, when unnamed).</param>
/// <param name="Weight">The weight initializer.</param>
/// <param name="Reason">Null when converted; else why it was left as it was.</param>
public sealed record QuantizedNode(string Node, string OpType, string Weight, long Rows, long Columns, string? Reason);

/// <summary>The rewrite: converted and skipped nodes, and the weights' bytes before and after.</summary>
public sealed record QuantizationReport(IReadOnlyList<QuantizedNode> Nodes, long WeightBytesBefore, long WeightBytesAfter)
{
    public IEnumerable<QuantizedNode> Converted => Nodes.Where(n => n.Reason is null);
    public IEnumerable<QuantizedNode> Skipped => Nodes.Where(n => n.Reason is not null);
}

/// <summary>
/// Post-training quantization of an ONNX model's MatMul/Gemm weights, written in .NET because ONNX Runtime's
/// quantization tooling is Python-only. The graph is read and written with OnnxSharp (the ONNX protobuf messages);
/// every node other than a converted MatMul/Gemm is kept as it is, so any model with float MatMul/Gemm weights can be
/// quantized, whatever else it holds. Converted: MatMul whose second input is a 2-D float initializer, and Gemm with
/// a 2-D float initializer B (transB, alpha, beta and the bias C honoured; transA refused for that node). Refused,
/// with the reason: weights stored outside the file, opsets older than DynamicQuantizeLinear's (11), and models with
/// nothing to convert.
/// </summary>
public static class OnnxQuantizer
{
    private const int MinOpset = 11;

    public static QuantizationReport Quantize(string sourcePath, string targetPath, QuantizationOptions options)
    {
        options.Validate();
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(sourcePath));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"{sourcePath} is not an ONNX model: {e.Message}", e);
        }
        var report = Quantize(model, options, sourcePath);
        using (var output = File.Create(targetPath))
            model.WriteTo(output);
        return report;
    }

    /// <summary>Rewrites <paramref name="model"/> in place.</summary>
    public static QuantizationReport Quantize(ModelProto model, QuantizationOptions options, string source = "the model")
    {
        options.Validate();
        var graph = model.Graph ?? throw new InvalidDataException($"{source} has no graph.");
        var opset = model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        if (opset < MinOpset)
            throw new InvalidDataException($"{source} uses ONNX opset {opset}; quantization needs opset {MinOpset} or later (DynamicQuantizeLinear, Cast to float16): re-export it with a newer opset.");
        if (graph.Initializer.Any(t => t.DataLocation == TensorProto.Types.DataLocation.External))
            throw new InvalidDataException($"{source} keeps weights in external data files; quantize works on self-contained models (save it with all tensors in the .onnx file).");

        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        // From IR version 4 on, a graph input of the same name overrides an initializer at run time: not a constant.
        // Before it, every initializer had to be listed as an input too, and runtimes treat them as constants.
        var overridable = model.IrVersion >= 4 ? graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal) : [];
        var rewriter = new Rewriter(graph, options, overridable);
        var nodes = new List<QuantizedNode>();
        var rewritten = new List<NodeProto>(graph.Node.Count);
        foreach (var node in graph.Node)
        {
            if (node.Domain is not ("" or "ai.onnx") || node.OpType is not ("MatMul" or "Gemm") || node.Input.Count < 2)
            {
                rewritten.Add(node);
                continue;
            }
            var name = node.Name is { Length: > 0 } n ? n : node.Output[0];
            var weightName = node.Input[1];
            if (!initializers.TryGetValue(weightName, out var weight) || overridable.Contains(weightName))
            {
                nodes.Add(new QuantizedNode(name, node.OpType, weightName, 0, 0, "its weight is not a constant initializer"));
                rewritten.Add(node);
                continue;
            }
            var dims = weight.Dims.ToArray();
            var (rows, columns) = dims.Length == 2 ? (dims[0], dims[1]) : (0L, 0L);
            var gemm = node.OpType == "Gemm" ? GemmAttributes.Of(node) : null;
            if (gemm is { TransB: true }) (rows, columns) = (columns, rows);
            var reason = weight.DataType != (int)TensorProto.Types.DataType.Float ? $"its weight is {(TensorProto.Types.DataType)weight.DataType}, not float"
                : dims.Length != 2 ? $"its weight has {dims.Length} dimensions, not 2"
                : gemm is { TransA: true } ? "Gemm with transA"
                : rows < options.MinDimension || columns < options.MinDimension ? $"{rows}×{columns} is under --min-dimension {options.MinDimension}"
                : null;
            // The weights are read once, for the range check and the rewrite.
            var data = reason is null ? FloatData(weight, source) : null;
            if (data is not null && options.Type == QuantizationType.Fp16 && data.Max(v => Math.Abs(v * (gemm?.Alpha ?? 1f))) is var max && max > (float)Half.MaxValue)
                reason = string.Create(CultureInfo.InvariantCulture, $"a weight of {max:G4} is beyond float16's range (±65504)");
            nodes.Add(new QuantizedNode(name, node.OpType, weightName, rows, columns, reason));
            if (reason is not null)
            {
                rewritten.Add(node);
                continue;
            }
            rewritten.AddRange(rewriter.Replace(node, name, data!, rows, columns, gemm, initializers));
        }
        if (nodes.All(n => n.Reason is not null))
            throw new InvalidDataException(nodes.Count == 0
                ? $"{source} has no MatMul or Gemm node (tree ensembles and other ai.onnx.ml operators are not quantized): nothing to convert."
                : $"{source}: none of its {nodes.Count} MatMul/Gemm nodes can be converted ({string.Join("; ", nodes.Select(x => $"{x.Node}: {x.Reason}"))}).");

        graph.Node.Clear();
        graph.Node.AddRange(rewritten);
        // The float weights that were converted go, unless something still reads them (another node, a subgraph, an output).
        var read = ReadNames(graph);
        var before = graph.Initializer.Sum(Bytes);
        var converted = nodes.Where(x => x.Reason is null).Select(x => x.Weight).ToHashSet(StringComparer.Ordinal);
        foreach (var unused in graph.Initializer.Where(t => converted.Contains(t.Name) && !read.Contains(t.Name)).ToList())
        {
            graph.Initializer.Remove(unused);
            // Listed as an input too (IR version 3): without its initializer it would become a required input.
            foreach (var input in graph.Input.Where(i => i.Name == unused.Name).ToList()) graph.Input.Remove(input);
        }
        graph.Initializer.AddRange(rewriter.NewInitializers);
        model.MetadataProps.Add(new StringStringEntryProto { Key = "streaminference.quantization", Value = options.Describe() });
        return new QuantizationReport(nodes, before, graph.Initializer.Sum(Bytes));
    }

    /// <summary>Every tensor name read by a node of the graph or of its subgraphs (If, Loop, Scan bodies read outer names), and the graph's outputs.</summary>
    private static HashSet<string> ReadNames(GraphProto graph)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        void Visit(GraphProto g)
        {
            foreach (var node in g.Node)
            {
                names.UnionWith(node.Input);
                foreach (var a in node.Attribute)
                {
                    if (a.G is { } body) Visit(body);
                    foreach (var b in a.Graphs) Visit(b);
                }
            }
            names.UnionWith(g.Output.Select(o => o.Name));
        }
        Visit(graph);
        return names;
    }

    /// <summary>Every tensor name defined in the graph or its subgraphs: node outputs, initializers, inputs.</summary>
    private static IEnumerable<string> DefinedNames(GraphProto graph)
    {
        foreach (var name in graph.Initializer.Select(i => i.Name).Concat(graph.Input.Select(i => i.Name))) yield return name;
        foreach (var node in graph.Node)
        {
            foreach (var output in node.Output) yield return output;
            foreach (var a in node.Attribute)
            foreach (var body in a.Graphs.Prepend(a.G).OfType<GraphProto>())
            foreach (var name in DefinedNames(body))
                yield return name;
        }
    }

    private static long Bytes(TensorProto t) => t.RawData.Length + t.FloatData.Count * 4L + t.Int32Data.Count * 4L + t.Int64Data.Count * 8L + t.DoubleData.Count * 8L;

    private static float[] FloatData(TensorProto tensor, string source)
    {
        var count = tensor.Dims.Aggregate(1L, (a, d) => a * d);
        if (tensor.RawData.Length > 0)
        {
            if (tensor.RawData.Length != count * 4) throw new InvalidDataException($"{source}: initializer '{tensor.Name}' holds {tensor.RawData.Length} bytes for {count} floats.");
            return MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
        }
        if (tensor.FloatData.Count != count) throw new InvalidDataException($"{source}: initializer '{tensor.Name}' holds {tensor.FloatData.Count} values for {count}.");
        return [.. tensor.FloatData];
    }

    private sealed record GemmAttributes(float Alpha, float Beta, bool TransA, bool TransB)
    {
        public static GemmAttributes Of(NodeProto node)
        {
            float F(string name, float fallback) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : fallback;
            bool B(string name) => node.Attribute.FirstOrDefault(a => a.Name == name) is { I: not 0 };
            return new(F("alpha", 1), F("beta", 1), B("transA"), B("transB"));
        }
    }

    /// <summary>Builds the replacement nodes and their initializers; quantized activations are shared between nodes reading the same tensor.</summary>
    private sealed class Rewriter(GraphProto graph, QuantizationOptions options, HashSet<string> overridable)
    {
        private readonly Dictionary<string, (string Q, string Scale, string Zero)> _quantizedInputs = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _halfInputs = new(StringComparer.Ordinal);
        // Every name in use, subgraphs included: a new tensor must not shadow a name an If/Loop body reads or defines.
        private readonly HashSet<string> _names = [.. ReadNames(graph), .. DefinedNames(graph)];

        public List<TensorProto> NewInitializers { get; } = [];

        public IEnumerable<NodeProto> Replace(NodeProto node, string name, float[] data, long rows, long columns, GemmAttributes? gemm, Dictionary<string, TensorProto> initializers)
        {
            // The weight as [K, N] row-major: Gemm's transB stores it as [N, K].
            var w = gemm is { TransB: true } ? Transpose(data, (int)columns, (int)rows) : data;
            var alpha = gemm?.Alpha ?? 1f;
            var output = node.Output[0];
            var hasBias = gemm is not null && node.Input.Count > 2 && node.Input[2].Length > 0;
            var product = hasBias ? Fresh($"{name}_product") : output;
            var nodes = options.Type == QuantizationType.Int8
                ? Int8(node.Input[0], name, w, (int)rows, (int)columns, alpha, product)
                : Fp16(node.Input[0], name, w, alpha, (int)rows, (int)columns, product);
            foreach (var n in nodes) yield return n;
            if (!hasBias) yield break;
            // Gemm's C, scaled by beta: folded into a new constant when it is one, multiplied at run time otherwise.
            var bias = node.Input[2];
            if (gemm!.Beta != 1f)
            {
                if (initializers.TryGetValue(bias, out var c) && c.DataType == (int)TensorProto.Types.DataType.Float && !overridable.Contains(bias))
                {
                    var scaled = FloatData(c, name).Select(v => v * gemm.Beta).ToArray();
                    bias = Fresh($"{name}_bias");
                    NewInitializers.Add(FloatTensor(bias, scaled, [.. c.Dims]));
                }
                else
                {
                    var beta = Fresh($"{name}_beta");
                    NewInitializers.Add(FloatTensor(beta, [gemm.Beta]));
                    var scaledBias = Fresh($"{name}_scaled_bias");
                    yield return Node("Mul", [bias, beta], [scaledBias], $"{name}_beta_mul");
                    bias = scaledBias;
                }
            }
            yield return Node("Add", [product, bias], [output], $"{name}_bias_add");
        }

        private IEnumerable<NodeProto> Int8(string input, string name, float[] w, int k, int n, float alpha, string output)
        {
            var limit = options.ReduceRange ? 63 : 127;
            var q = new sbyte[w.Length];
            var scales = new float[n];
            for (var j = 0; j < n; j++)
            {
                var max = 0f;
                for (var i = 0; i < k; i++) max = Math.Max(max, Math.Abs(w[i * n + j]));
                var scale = max > 0 ? max / limit : 1f;
                scales[j] = scale * alpha;
                for (var i = 0; i < k; i++) q[i * n + j] = (sbyte)Math.Clamp(MathF.Round(w[i * n + j] / scale, MidpointRounding.ToEven), -limit, limit);
            }
            var weight = Fresh($"{name}_weight_int8");
            var weightScale = Fresh($"{name}_weight_scale");
            var weightZero = Fresh($"{name}_weight_zero_point");
            NewInitializers.Add(new TensorProto
            {
                Name = weight, DataType = (int)TensorProto.Types.DataType.Int8, Dims = { k, n },
                RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(q.AsSpan())),
            });
            NewInitializers.Add(FloatTensor(weightScale, scales, n));
            NewInitializers.Add(new TensorProto { Name = weightZero, DataType = (int)TensorProto.Types.DataType.Int8, Dims = { n }, RawData = ByteString.CopyFrom(new byte[n]) });

            if (!_quantizedInputs.TryGetValue(input, out var a))
            {
                a = (Fresh($"{input}_quantized"), Fresh($"{input}_scale"), Fresh($"{input}_zero_point"));
                _quantizedInputs[input] = a;
                yield return Node("DynamicQuantizeLinear", [input], [a.Q, a.Scale, a.Zero], $"{name}_input_quantize");
            }
            var integer = Fresh($"{name}_int32");
            var asFloat = Fresh($"{name}_int32_float");
            var scale2 = Fresh($"{name}_output_scale");
            yield return Node("MatMulInteger", [a.Q, weight, a.Zero, weightZero], [integer], $"{name}_matmul_integer");
            yield return Node("Cast", [integer], [asFloat], $"{name}_cast", Attribute("to", (long)TensorProto.Types.DataType.Float));
            yield return Node("Mul", [a.Scale, weightScale], [scale2], $"{name}_scale_mul");
            yield return Node("Mul", [asFloat, scale2], [output], $"{name}_dequantize");
        }

        private IEnumerable<NodeProto> Fp16(string input, string name, float[] w, float alpha, int k, int n, string output)
        {
            var half = new Half[w.Length];
            for (var i = 0; i < w.Length; i++) half[i] = (Half)(w[i] * alpha);
            var weight = Fresh($"{name}_weight_fp16");
            NewInitializers.Add(new TensorProto
            {
                Name = weight, DataType = (int)TensorProto.Types.DataType.Float16, Dims = { k, n },
                RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(half.AsSpan())),
            });
            if (!_halfInputs.TryGetValue(input, out var halfInput))
            {
                halfInput = _halfInputs[input] = Fresh($"{input}_fp16");
                yield return Node("Cast", [input], [halfInput], $"{name}_input_fp16", Attribute("to", (long)TensorProto.Types.DataType.Float16));
            }
            var product = Fresh($"{name}_fp16_product");
            yield return Node("MatMul", [halfInput, weight], [product], $"{name}_matmul_fp16");
            yield return Node("Cast", [product], [output], $"{name}_output_float", Attribute("to", (long)TensorProto.Types.DataType.Float));
        }

        private string Fresh(string wanted)
        {
            var name = wanted;
            for (var i = 1; !_names.Add(name); i++) name = string.Create(CultureInfo.InvariantCulture, $"{wanted}_{i}");
            return name;
        }

        private NodeProto Node(string op, string[] inputs, string[] outputs, string name, params AttributeProto[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = Fresh(name) };
            node.Input.AddRange(inputs);
            node.Output.AddRange(outputs);
            node.Attribute.AddRange(attributes);
            return node;
        }

        private static AttributeProto Attribute(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

        private static TensorProto FloatTensor(string name, float[] values, params long[] dims)
        {
            var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) };
            t.Dims.AddRange(dims);
            return t;
        }

        private static float[] Transpose(float[] data, int rows, int columns)
        {
            var t = new float[data.Length];
            for (var i = 0; i < rows; i++)
                for (var j = 0; j < columns; j++) t[j * rows + i] = data[i * columns + j];
            return t;
        }
    }
}
